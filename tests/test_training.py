"""Training on real photos (woof-mini, 10 breeds, 300 train / 100 val): each test asserts what could fail."""

import csv
import json
import math
import subprocess
import sys

import lightning as L
import pytest
import torch
import yaml
from timm.data import ImageNetInfo

from transferlab.config import TrainConfig
from transferlab.data.datasets import PhotoDataset
from transferlab.data.names import wordnet_id
from transferlab.data.sources import folder_source
from transferlab.models.backbones import resolve_backbone
from transferlab.models.classifier import build_classifier, data_config
from transferlab.models.freezing import frozen_batchnorms, weight_layers
from transferlab.models.precision import cpu_model, speed_flags
from transferlab.models.weights import create_timm_model
from transferlab.rundir import HISTORY_COLUMNS, RunDir
from transferlab.experiment import train

pytestmark = pytest.mark.slow


class StepProbe(L.Callback):
    """Records, at every training step, frozen BatchNorm modes and the trainable parameter names."""

    def on_fit_start(self, trainer, pl_module):
        backbone = pl_module.model.backbone
        self.frozen = frozen_batchnorms(backbone)
        self.buffers_before = {name: b.clone().cpu() for name, b in backbone.named_buffers()}
        self.frozen_bn_training: list[bool] = []
        self.head_bn_training: list[bool] = []
        self.trainable: list[frozenset[str]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.frozen_bn_training.append(any(m.training for m in self.frozen))
        self.head_bn_training.append(pl_module.model.head[2].training)
        self.trainable.append(frozenset(n for n, p in pl_module.model.named_parameters() if p.requires_grad))

    def on_fit_end(self, trainer, pl_module):
        self.buffers_after = dict(pl_module.model.backbone.named_buffers())

    def buffers_unchanged(self) -> bool:
        return all(torch.equal(self.buffers_before[k], v.cpu()) for k, v in self.buffers_after.items())


@pytest.fixture(scope="session")
def frozen_run(woof_mini, tmp_path_factory):
    probe = StepProbe()
    out = tmp_path_factory.mktemp("runs") / "frozen"
    config = TrainConfig(data=str(woof_mini), out=str(out), strategy="frozen", epochs=3, batch_size=32, cache=False, runtime="torch",
                         image_size=160)
    return train(config, callbacks=[probe]), probe


def test_bundled_weights_are_real_imagenet_weights(woof_mini):
    """1000-way ImageNet top-1 of the pretrained Lite0 on woof-mini val, scored by each breed's WordNet id."""
    model, _ = create_timm_model(resolve_backbone("efficientnet_lite0"), pretrained=True)
    model.eval()
    index = folder_source(woof_mini)
    imagenet = ImageNetInfo().label_names()
    to_imagenet = torch.tensor([imagenet.index(wordnet_id(name)) for name in index.classes])
    loader = torch.utils.data.DataLoader(PhotoDataset(index.val, data_config(model)), batch_size=50)
    correct = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += (model(images).argmax(1) == to_imagenet[labels]).sum().item()
    assert correct / len(index.val) >= 0.70


def test_frozen_learns_the_breeds(frozen_run):
    run, _ = frozen_run
    metrics = json.loads(run.metrics_file.read_text())["frozen"]
    assert metrics["epochs"] == 3
    assert metrics["val_acc"] >= 0.75, metrics  # chance is 0.10


def test_frozen_batchnorm_in_eval_mode_every_step_and_stats_untouched(frozen_run):
    _, probe = frozen_run
    assert len(probe.frozen_bn_training) == 3 * math.ceil(300 / 32)
    assert len(probe.frozen) == 49  # every BatchNorm of Lite0's backbone
    assert not any(probe.frozen_bn_training)
    assert all(probe.head_bn_training)  # the new head's BatchNorm trains, as in Keras
    assert probe.buffers_unchanged()


def test_run_directory_has_every_file(frozen_run):
    run, _ = frozen_run
    with open(run.history_file, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == HISTORY_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and {r["strategy"] for r in rows} == {"frozen"}
    assert all(math.isfinite(float(r[c])) for r in rows for c in HISTORY_COLUMNS if c not in ("epoch", "strategy"))
    metrics = json.loads(run.metrics_file.read_text())
    assert set(metrics["frozen"]) == {
        "val_acc", "val_loss", "best_val_acc", "best_epoch", "epochs", "seconds", "training_precision", "inference_precision", "schedule",
    }
    assert metrics["frozen"]["inference_precision"]["requested"] == "auto"
    config = yaml.safe_load(run.config_file.read_text())
    assert config["config"]["strategy"] == "frozen" and config["versions"]["torch"].startswith("2.14")
    assert config["weights"]["source"] == "bundled"
    assert config["machine"]["cpu"] == cpu_model() and config["machine"]["extensions"] == speed_flags()  # what its seconds mean
    classes = json.loads(run.classes_file.read_text())
    assert len(classes) == 10 and classes[6] == {"index": 6, "folder": "n02099601-golden_retriever", "name": "golden retriever", "train": 30, "val": 10}
    assert run.best_checkpoint("frozen").is_file() and (run.checkpoint_dir("frozen") / "last.ckpt").is_file()
    assert run.plot_file("history_frozen").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_finetune_from_frozen_run(frozen_run, woof_mini, tmp_path):
    frozen, _ = frozen_run
    probe = StepProbe()
    config = TrainConfig(
        data=str(woof_mini), out=str(tmp_path / "ft"), strategy="finetune", init=str(frozen.path), epochs=1, batch_size=32,
        unfreeze_layers=20,
    )
    run = train(config, callbacks=[probe])

    head = {f"head.{n}" for n in ("2.weight", "2.bias", "4.weight", "4.bias")}
    reference, _ = build_classifier("efficientnet_lite0", 10, pretrained=False)
    last_20 = {
        f"backbone.{name}.{p}" for name, layer in weight_layers(reference.backbone)[-20:] for p, _ in layer.named_parameters()
    }
    assert probe.trainable and all(step == head | last_20 for step in probe.trainable)
    assert not any(probe.frozen_bn_training)
    assert probe.buffers_unchanged()
    finetune = json.loads(run.metrics_file.read_text())["finetune"]
    before = json.loads(frozen.metrics_file.read_text())["frozen"]
    assert finetune["val_acc"] >= min(0.75, before["best_val_acc"] - 0.10), (before, finetune)


def test_scratch_one_epoch_through_the_cli(woof_mini, tmp_path):
    out = tmp_path / "scratch"
    result = subprocess.run(
        [sys.executable, "-m", "transferlab.cli", "train", str(woof_mini), "--strategy", "scratch",
         "--epochs", "1", "--batch-size", "32", "--image-size", "96", "--accelerator", "cpu", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    with open(out / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["strategy"] == "scratch"
    assert all(rows[0][c] != "" and math.isfinite(float(rows[0][c])) for c in HISTORY_COLUMNS if c != "strategy")
    assert "scratch: val_acc" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())["scratch"]
    assert metrics["training_precision"] == _auto_training_precision(metrics), "auto: bf16 only where this CPU's timing found it faster"


def _auto_training_precision(metrics: dict) -> str:
    """What `--precision auto` trains a stage in on this CPU, by the bf16 timing the stage recorded."""
    from transferlab.train.bf16_probe import MIN_SPEEDUP
    from transferlab.train.distributed import cpu_has_bf16

    if not cpu_has_bf16():
        assert "bf16_training_speedup" not in metrics, "no native bf16: nothing to time"
        return "32-true"
    return "bf16-mixed" if metrics["bf16_training_speedup"] >= MIN_SPEEDUP else "32-true"


def test_finetune_without_init_runs_the_frozen_stage_first(image_tree, tmp_path):
    """Synthetic photos, tiny images: checks the two-stage flow and early stopping, not accuracy."""
    root = image_tree({"a": 6, "b": 6})
    config = TrainConfig(
        data=str(root), out=str(tmp_path / "two_stage"), strategy="finetune", frozen_epochs=2, epochs=1,
        batch_size=4, image_size=64, augment="none", early_stop=5,
    )
    run = train(config)
    assert [(r["strategy"], r["epoch"]) for r in run.read_history()] == [("frozen", 1), ("frozen", 2), ("finetune", 1)]
    assert set(run.read_metrics()) == {"frozen", "finetune"}
    assert run.plot_file("history_frozen").is_file() and run.plot_file("history_finetune").is_file()
    assert run.best_checkpoint("frozen").is_file() and run.best_checkpoint("finetune").is_file()


@pytest.mark.parametrize("kind, produced", [("csv", "logs/frozen/version_0/metrics.csv"), ("tensorboard", "logs/frozen/version_0"), ("mlflow", "mlruns")])
def test_loggers_receive_the_curves_and_history_csv_stays(image_tree, tmp_path, kind, produced):
    """Through the CLI, each in its own process: importing mlflow into the long-lived pytest process, after the rest
    of the suite, crashed it (exit 139), never in a fresh process — a training is one process in use."""
    import importlib.util

    if importlib.util.find_spec({"csv": "lightning", "tensorboard": "tensorboard", "mlflow": "mlflow"}[kind]) is None:
        pytest.skip(f"the {kind} extra is not installed")  # found, not imported: importing mlflow here crashed pytest
    root = image_tree({"a": 6, "b": 6})
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "transferlab", "train", str(root), "--epochs", "2", "--batch-size", "4", "--image-size", "48",
         "--augment", "none", "--logger", kind, "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / produced).exists()
    assert [row["epoch"] for row in RunDir(out).read_history()] == [1, 2]
    if kind == "csv":
        rows = list(csv.DictReader(open(out / produced)))
        assert {"val_acc", "train_loss"} <= set(rows[0]) and sum(1 for r in rows if r.get("val_acc")) == 2
    if kind == "tensorboard":
        assert list((out / produced).glob("events.out.tfevents.*"))


def test_finetune_runs_each_view_through_the_frozen_trunk_once_per_fit_with_the_same_answers(image_tree, tmp_path, monkeypatch):
    """finetune with its trunk in the fast runtime and epochs cycling through two views: validation photos skip the
    trunk from the second epoch on, training photos from the third, and the history is the one recomputing gives."""
    from transferlab.data import frozen_outputs

    root = image_tree({"a": 8, "b": 8})
    through_trunk: list[int] = []
    outputs = frozen_outputs.FrozenPart.outputs

    def counted(self, keys, images, keep):
        def counted_images(positions):
            through_trunk.append(len(positions))
            return images(positions)

        return outputs(self, keys, counted_images, keep)

    monkeypatch.setattr(frozen_outputs.FrozenPart, "outputs", counted)

    def finetune(out: str, kept_bytes: int) -> list[dict]:
        monkeypatch.setattr(frozen_outputs, "OUTPUTS_BYTES", kept_bytes)
        run = train(TrainConfig(data=str(root), out=str(tmp_path / out), strategy="finetune", frozen_epochs=1, epochs=4,
                                batch_size=4, image_size=64, augment="seed-keras", trunk_views=2, inference_precision="fp32",
                                runtime="openvino"))
        assert run.read_metrics()["finetune"]["trunk_views"] == 2
        return run.read_history("finetune")

    kept = finetune("kept", 1 << 30)
    photos_kept = sum(through_trunk)
    through_trunk.clear()
    recomputed = finetune("recomputed", 0)
    val, train_photos = kept[0]["val_photos"], sum(through_trunk) // 4 - kept[0]["val_photos"]
    assert photos_kept == 2 * train_photos + val
    for a, b in zip(kept, recomputed, strict=True):
        assert (a["val_loss"], a["val_acc"], a["train_loss"]) == (b["val_loss"], b["val_acc"], b["train_loss"])
