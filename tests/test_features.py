"""The frozen fast path: cached features give the full path's losses, are reused, and learn on real photos."""

import numpy as np
import pytest

from conftest import wait_until
from transferlab.config import TrainConfig
from transferlab.data.sources import folder_source
from transferlab.models.classifier import build_classifier, data_config
from transferlab.models.runtime import FeatureRuntime, feature_runtime, torch_runtime
from transferlab.train.feature_store import FeatureStore
from transferlab.train.features import extract_features
from transferlab.experiment import train


def _losses(run):
    return np.array([[r["train_loss"], r["val_loss"], r["train_acc"], r["val_acc"]] for r in run.read_history("frozen")])


@pytest.mark.parametrize("runtime", ["torch", "auto"])
def test_cached_path_gives_the_full_paths_losses(image_tree, tmp_path, runtime):
    root = image_tree({"a": 10, "b": 10, "c": 10})
    common = dict(
        data=str(root), strategy="frozen", epochs=3, batch_size=8, image_size=64, augment="none", runtime=runtime, inference_precision="fp32",
    )
    cached = train(TrainConfig(out=str(tmp_path / "cached"), **common))
    full = train(TrainConfig(out=str(tmp_path / "full"), cache=False, **common))
    np.testing.assert_allclose(_losses(cached), _losses(full), rtol=2e-4, atol=1e-5)


@pytest.fixture
def extraction(image_tree, tmp_path):
    """Photos of two classes, a pretrained Lite0, its 64 px preprocessing and an empty feature store."""
    index = folder_source(image_tree({"a": 6, "b": 6}))
    model, _ = build_classifier("efficientnet_lite0", 2, True)
    return index, model, data_config(model.backbone, 64), FeatureStore(tmp_path / "store")


def test_a_second_run_needs_no_backbone_pass(extraction):
    index, model, config, store = extraction
    calls = []

    def runtime() -> FeatureRuntime:
        calls.append(1)
        return torch_runtime(model.backbone)

    first = extract_features(index.train, store, runtime, config, None, 1)
    again = extract_features(index.train, store, runtime, config, None, 1)
    assert calls == [1] and first.shape == (len(index.train), 1, 1280)
    np.testing.assert_array_equal(first, again)


def test_processes_sharing_a_store_compute_each_photo_once(extraction):
    """Two extractions at once (the processes of a distributed run, two runs): one computes, the other reads."""
    from concurrent.futures import ThreadPoolExecutor

    index, model, config, store = extraction
    computed = []

    def runtime() -> FeatureRuntime:
        reference = torch_runtime(model.backbone)
        return FeatureRuntime("counting", lambda images: (computed.append(len(images)), reference.run(images))[1])

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: extract_features(index.train, store, runtime, config, None, 1), range(2)))
    assert sum(computed) == len(index.train)
    np.testing.assert_array_equal(results[0], results[1])

def test_the_next_batch_loads_while_the_backbone_runs(extraction, monkeypatch):
    """Without worker processes, extraction loads batch k + 1 (decoding, augmenting) while the backbone runs batch k."""
    from transferlab.train import features

    index, model, config, store = extraction
    monkeypatch.setattr(features, "RUNTIME_BATCH", 2)
    loaded, seen = [0], []  # photos loaded so far; how many when each batch's run ended
    view_item = features.ViewDataset.__getitem__
    monkeypatch.setattr(features.ViewDataset, "__getitem__", lambda self, i: (loaded.__setitem__(0, loaded[0] + 1), view_item(self, i))[1])
    reference = torch_runtime(model.backbone)

    photos = len(index.train)

    def run(images):
        wait_until(lambda: loaded[0] >= min(photos, 2 * (len(seen) + 2)))  # the next batch, loading meanwhile
        seen.append(loaded[0])
        return reference.run(images)

    result = extract_features(index.train, store, lambda: FeatureRuntime("slow", run), config, None, 1)
    assert len(seen) == (photos + 1) // 2 and result.shape == (photos, 1, 1280)
    assert seen == [min(photos, 2 * (k + 2)) for k in range(len(seen))]  # when batch k is done, batch k + 1 is loaded too


def test_every_installed_runtime_matches_pytorch(tmp_path):
    model, _ = build_classifier("efficientnet_lite0", 2, True)
    images = np.random.default_rng(1).standard_normal((3, 3, 96, 96)).astype(np.float32)
    reference = torch_runtime(model.backbone).run(images)
    for name in ("onnxruntime", "openvino"):
        pytest.importorskip(name)
        runtime = feature_runtime(model.backbone, 96, tmp_path, prefer=name)
        assert runtime.name == name
        np.testing.assert_allclose(runtime.run(images), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_frozen_on_cached_augmented_views_learns_the_breeds(woof_mini, tmp_path):
    run = train(TrainConfig(data=str(woof_mini), out=str(tmp_path / "run"), strategy="frozen", epochs=5, views=2))
    assert run.read_metrics()["frozen"]["best_val_acc"] >= 0.85
    assert len(run.read_history("frozen")) == 5


def test_finetune_with_the_trunk_in_a_fast_runtime_matches_pytorch(image_tree, tmp_path):
    pytest.importorskip("onnxruntime")
    root = image_tree({"a": 8, "b": 8})
    frozen = train(TrainConfig(data=str(root), out=str(tmp_path / "frozen"), strategy="frozen", epochs=1, batch_size=8, image_size=64, augment="none"))
    common = dict(
        data=str(root), strategy="finetune", init=str(frozen.path), epochs=2, batch_size=8, image_size=64, augment="none", unfreeze_layers=20,
        precision="32", inference_precision="fp32",  # a parity check: reduced precisions have their own gate
    )
    fast = train(TrainConfig(out=str(tmp_path / "fast"), runtime="onnxruntime", **common))
    plain = train(TrainConfig(out=str(tmp_path / "plain"), runtime="torch", **common))
    rows = lambda run: np.array([[r["train_loss"], r["val_loss"]] for r in run.read_history("finetune")])  # noqa: E731
    np.testing.assert_allclose(rows(fast), rows(plain), rtol=1e-3, atol=1e-4)


def test_no_autograd_graph_below_the_first_trainable_layer():
    import torch

    from transferlab.models.split import split_at_first_trainable
    from transferlab.train.strategies import Unfreeze, get_strategy

    model, _ = build_classifier("efficientnet_lite0", 3, True)
    get_strategy("finetune").apply(model, Unfreeze(layers=20))
    split = split_at_first_trainable(model.backbone)
    assert 0 < split.cut and all(not p.requires_grad for p in split.trunk.parameters())
    assert any(p.requires_grad for p in split.tail[0].parameters())
    seen = {}

    def record(module, inputs, output):
        seen["trunk"] = output.requires_grad

    split.trunk[-1].register_forward_hook(record)
    out = model(torch.randn(2, 3, 64, 64))
    assert seen["trunk"] is False and out.requires_grad
    np.testing.assert_allclose(
        split.tail(split.trunk(torch.ones(1, 3, 64, 64))).detach().numpy(),
        model.backbone.forward_features(torch.ones(1, 3, 64, 64)).detach().numpy(), rtol=1e-5, atol=1e-6,
    )


def test_runtimes_leave_every_module_in_its_own_mode(tmp_path):
    from transferlab.models.runtime import module_runtime
    from transferlab.models.split import split_at_first_trainable
    from transferlab.train.strategies import Unfreeze, get_strategy

    model, _ = build_classifier("efficientnet_lite0", 3, True)
    get_strategy("finetune").apply(model, Unfreeze())
    model.train()
    model.backbone.bn1.eval()
    before = [m.training for m in model.modules()]
    split = split_at_first_trainable(model.backbone)
    module_runtime(split.trunk, (3, 64, 64), tmp_path, "auto")
    feature_runtime(model.backbone, 64, tmp_path, "auto")
    assert [m.training for m in model.modules()] == before


def test_the_folder_of_a_runs_features_is_remembered_for_its_settings(extraction, tmp_path):
    from transferlab.config import RunSettings
    from transferlab.train.feature_store import remember_store, remembered_store
    from transferlab.train.fit import feature_store

    _, model, config, _ = extraction
    settings = RunSettings(data="photos", out="run", data_dir=str(tmp_path / "cache"))
    store = feature_store(settings, model, config, "fp32")
    store.root.mkdir(parents=True)
    assert remembered_store(settings) is None  # naming a folder (the precision gate's partial one) is not enough
    remember_store(settings, store)
    assert remembered_store(settings).root == store.root
    assert remembered_store(settings.model_copy(update={"out": "elsewhere", "seed": 1, "data": "other"})).root == store.root
    for changed in ({"augment": "seed-all"}, {"backbone": "efficientnet_b0"}, {"image_size": 128}, {"runtime": "torch"}, {"weights": "w.pth"}):
        assert remembered_store(settings.model_copy(update=changed)) is None, changed


def test_a_frozen_run_leaves_every_photos_features_for_an_audit(image_tree, tmp_path):
    from transferlab.audits.features import remembered_features
    from transferlab.config import RunSettings
    from transferlab.data.photo_cache import PhotoCache
    from transferlab.data.resolve import load_index

    common = dict(data=str(image_tree({"a": 6, "b": 6})), image_size=64, runtime="torch", data_dir=str(tmp_path / "cache"))
    train(TrainConfig(out=str(tmp_path / "run"), strategy="frozen", epochs=1, batch_size=4, **common))
    settings = RunSettings(out=str(tmp_path / "audit"), **common)
    index = load_index(settings.data_spec)
    digests = PhotoCache.in_cache(settings.data_dir).hashes([s.path for s in index.train + index.val])
    assert remembered_features(settings, digests).shape == (12, 1280)
