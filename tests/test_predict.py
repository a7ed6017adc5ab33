"""Using a trained model: tlab predict (table, csv, json), transferlab.load, tlab export with its parity check."""

import csv
import io
import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import transferlab
from conftest import wait_until
from transferlab.cli import app
from transferlab.evaluate.evaluation import evaluate_run
from transferlab.evaluate.metrics import read_predictions

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def frozen_run(woof_frozen_run):
    return woof_frozen_run


def test_predict_agrees_with_evaluate(frozen_run, woof_mini):
    evaluated = read_predictions(frozen_run.predictions_file)["frozen"]
    clf = transferlab.load(frozen_run.path)
    assert clf.classes[0] == "n02086240-Shih-Tzu" and clf.names[0] == "Shih-Tzu" and clf.backend == "torch"
    results = clf.predict(evaluated.paths, top_k=3)
    names = clf.names
    assert [r.predictions[0].label for r in results] == [names[i] for i in evaluated.predicted]
    assert all(len(r.predictions) == 3 and r.predictions[0].probability >= r.predictions[1].probability for r in results)
    image = Image.open(evaluated.paths[0])
    assert clf.predict(image)[0].predictions[0].label == results[0].predictions[0].label


def test_predictor_takes_decoded_tensors_as_it_takes_files(frozen_run):
    """A notebook's decoded photo (RGB uint8, (3, H, W)) gets the file's answer; a batch (N, 3, H, W) is N photos;
    anything else is refused with what was wrong."""
    from transferlab.data.decode import load_uint8

    paths = read_predictions(frozen_run.predictions_file)["frozen"].paths[:3]
    clf = transferlab.load(frozen_run.path)
    from_files = clf.predict(paths)
    one = clf.predict(load_uint8(paths[0], min_size=clf.decode_size))
    assert len(one) == 1 and one[0].path is None
    assert one[0].predictions[0].probability == pytest.approx(from_files[0].predictions[0].probability, abs=1e-6)
    decoded = load_uint8(paths[0], min_size=clf.decode_size)
    pair = clf.predict(torch.stack([decoded, decoded.flip(-1)]))
    assert len(pair) == 2 and pair[0].predictions[0].probability == pytest.approx(one[0].predictions[0].probability, abs=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        clf.predict(load_uint8(paths[0]).float())


def test_output_formats_parse(frozen_run, woof_mini):
    folder = woof_mini / "val" / "n02088364-beagle"
    as_json = runner.invoke(app, ["predict", str(frozen_run.path), str(folder), "--format", "json", "--top-k", "2"])
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)
    assert len(payload) == 10 and set(payload[0]) == {"path", "label", "predictions"}
    assert set(payload[0]["predictions"][0]) == {"label", "class", "probability", "raw_probability"}
    assert len(payload[0]["predictions"]) == 2 and payload[0]["label"] == payload[0]["predictions"][0]["label"]
    assert sum(p["predictions"][0]["label"] == "beagle" for p in payload) >= 6
    as_csv = runner.invoke(app, ["predict", str(frozen_run.path), str(folder / "*.JPEG"), "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(rows) == 50 and set(rows[0]) == {"path", "rank", "label", "class", "probability", "raw_probability", "not_sure"}
    table = runner.invoke(app, ["predict", str(frozen_run.path), str(next(folder.iterdir()))])
    assert table.exit_code == 0 and "%" in table.stdout


def test_unreadable_files_are_reported_and_skipped(frozen_run, woof_mini, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    photo = next((woof_mini / "val" / "n02111889-Samoyed").iterdir())
    result = runner.invoke(app, ["predict", str(frozen_run.path), str(broken), str(photo), "--format", "json"])
    assert result.exit_code == 1
    assert "broken.jpg" in result.stderr and "not an image" in result.stderr
    assert [p["path"] for p in json.loads(result.stdout)] == [str(photo)]


def test_export_onnx_parity_and_predict_through_onnxruntime(frozen_run, tmp_path):
    out = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", str(frozen_run.path), "--out", str(out), "--photos", "24"])
    assert result.exit_code == 0, result.output
    assert "same top-1 on 24/24: OK" in result.output
    onnx_clf, torch_clf = transferlab.load(out), transferlab.load(frozen_run.path)
    assert onnx_clf.backend == "onnxruntime" and onnx_clf.classes == torch_clf.classes
    import onnx

    metadata = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["transferlab"])
    assert metadata["inference_precision"] == frozen_run.read_metrics()["frozen"]["inference_precision"]["used"]
    assert metadata["temperature"] == pytest.approx(frozen_run.temperature("frozen")) == onnx_clf.temperature
    paths = read_predictions(frozen_run.predictions_file)["frozen"].paths[:20]
    onnx_answers, torch_answers = onnx_clf.predict(paths), torch_clf.predict(paths)
    assert [r.predictions[0].class_name for r in onnx_answers] == [r.predictions[0].class_name for r in torch_answers]
    assert all(abs(a.predictions[0].probability - b.predictions[0].probability) < 1e-3 for a, b in zip(onnx_answers, torch_answers))
    json_out = runner.invoke(app, ["predict", str(out), paths[0], "--format", "json"])
    assert json.loads(json_out.stdout)[0]["predictions"][0]["class"] in torch_clf.classes


def test_clear_errors(frozen_run, tmp_path, image_tree):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert "not a run directory" in runner.invoke(app, ["predict", str(empty), "x.jpg"]).output
    (empty / "config.yaml").write_text("config: {}\n")
    assert "no checkpoints" in runner.invoke(app, ["predict", str(empty), "x.jpg"]).output
    assert "no such file" in runner.invoke(app, ["predict", str(frozen_run.path), str(tmp_path / "nope.jpg")]).output
    assert "no finetune checkpoint" in runner.invoke(app, ["predict", str(frozen_run.path), "x", "--strategy", "finetune"]).output
    other = image_tree({"zebra": 2, "okapi": 2})
    result = runner.invoke(app, ["evaluate", str(frozen_run.path), "--data", str(other)])
    assert result.exit_code == 2 and "not trained on" in result.output
    for command in ("predict", "evaluate"):  # a misspelt runtime is named with the ones there are, not run as ONNX Runtime
        result = runner.invoke(app, [command, str(frozen_run.path), *(["x.jpg"] if command == "predict" else []), "--runtime", "openvno"])
        assert result.exit_code == 2 and "--runtime: expected one of auto, openvino, onnxruntime, torch (got 'openvno')" in result.output
    with pytest.raises(ValueError, match="got 'bogus'"):
        transferlab.load(frozen_run.path, runtime="bogus")


def test_evaluation_in_a_fast_runtime_agrees_with_pytorch(frozen_run, monkeypatch, tmp_path):
    """Above FAST_RUNTIME_MIN_PHOTOS evaluation runs the exported model; its answers are PyTorch's."""
    from transferlab.evaluate import evaluation

    reference = read_predictions(frozen_run.predictions_file)["frozen"]
    monkeypatch.setattr(evaluation, "FAST_RUNTIME_MIN_PHOTOS", 1)
    monkeypatch.setattr(evaluation, "runtimes_dir", lambda: tmp_path / "runtimes")
    results, _ = evaluate_run(frozen_run.path, runtime="onnxruntime")
    assert list((tmp_path / "runtimes").glob("*.onnx")), "the model must have been exported"
    fast = read_predictions(frozen_run.predictions_file)["frozen"]
    assert fast.paths == reference.paths
    assert (fast.predicted == reference.predicted).mean() >= 0.99
    assert abs(fast.probability - reference.probability).max() < 1e-3


def test_evaluation_loads_the_next_batch_while_the_models_run():
    """`predict_logits` over photos: batch k + 1 is decoded while the models run on batch k."""
    import numpy as np
    from torch.utils.data import Dataset

    from transferlab.evaluate.metrics import predict_logits

    loaded, seen = [0], []  # photos loaded so far; how many when each batch's models were done

    class Photos(Dataset):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, index: int):
            loaded[0] += 1
            return torch.full((3, 4, 4), float(index)), index % 2

    def logits(batch: np.ndarray) -> np.ndarray:
        wait_until(lambda: loaded[0] >= min(10, 2 * (len(seen) + 2)))  # the next batch, loading meanwhile
        seen.append(loaded[0])
        return batch.reshape(len(batch), -1)[:, :2]

    labels, computed = predict_logits({"slow": logits}, Photos(), batch_size=2)
    assert labels.tolist() == [i % 2 for i in range(10)] and computed["slow"][:, 0].tolist() == list(range(10))
    assert seen == [min(10, 2 * (k + 2)) for k in range(5)]
