import timm
import torch
import pytest

from transferlab.models.backbones import BACKBONES, BackboneError, resolve_backbone
from transferlab.models.classifier import Classifier, build_classifier, data_config
from transferlab.models.freezing import (
    is_batchnorm,
    unfreeze_last_blocks,
    weight_layers,
)
from transferlab.models.weights import WeightsError, match_state_dict
from transferlab.train.strategies import Unfreeze, get_strategy


@pytest.fixture(scope="module")
def lite0():
    model, weights = build_classifier("efficientnet_lite0", num_classes=10, pretrained=True)
    return model, weights


def test_registry_entries_are_data():
    assert set(BACKBONES) == {"efficientnet_lite0", "efficientnet_b0"}
    assert resolve_backbone("efficientnet_lite0").timm_name == "tf_efficientnet_lite0"
    assert resolve_backbone("timm:resnet18").timm_name == "resnet18"


@pytest.mark.parametrize("name", ["resnet9000", "timm:not_a_model"])
def test_unknown_backbone_lists_known_ones(name):
    with pytest.raises(BackboneError, match="efficientnet_lite0|unknown timm"):
        resolve_backbone(name)


def test_bundled_lite0_weights_load_every_tensor(lite0):
    model, weights = lite0
    assert weights.source == "bundled" and len(weights.sha256) == 64
    reference = torch.load(
        resolve_backbone("efficientnet_lite0").bundled_path(), map_location="cpu", weights_only=True
    )
    loaded = model.backbone.state_dict()
    source = [v for k, v in reference.items() if not k.startswith("_fc")]
    assert len(source) == len(loaded)
    assert all(torch.equal(a, b) for a, b in zip(source, loaded.values()))


def test_data_config_follows_timm_pretrained_cfg(lite0):
    cfg = data_config(lite0[0].backbone)
    assert (cfg.image_size, cfg.interpolation, cfg.crop_pct) == (224, "bicubic", 0.875)
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.5, 0.5, 0.5)


def test_head_is_the_notebooks(lite0):
    head = lite0[0].head
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["AdaptiveAvgPool2d", "Flatten", "BatchNorm1d", "Dropout", "Linear"]
    assert head[3].p == 0.2 and head[4].out_features == 10 and head[4].in_features == 1280
    lite0[0].eval()
    assert lite0[0](torch.zeros(2, 3, 64, 64)).shape == (2, 10)


def test_partial_weights_are_refused():
    target = {"a.weight": torch.zeros(2, 2), "b.weight": torch.zeros(3)}
    with pytest.raises(WeightsError, match="do not fit"):
        match_state_dict({"a.weight": torch.zeros(2, 2)}, target, "x.pth", "classifier")
    with pytest.raises(WeightsError, match="shape"):
        match_state_dict({"a.weight": torch.zeros(2, 2), "b.weight": torch.zeros(4)}, target, "x.pth", "classifier")


def test_b0_without_weights_says_how_to_get_them():
    with pytest.raises(WeightsError, match="--weights FILE"):
        build_classifier("efficientnet_b0", num_classes=3, pretrained=True)


def test_b0_from_weights_file(tmp_path):
    source = timm.create_model("efficientnet_b0")
    path = tmp_path / "b0.pth"
    torch.save(source.state_dict(), path)
    model, weights = build_classifier("efficientnet_b0", num_classes=3, pretrained=True, weights_file=str(path))
    assert weights.source == "file"
    assert torch.equal(model.backbone.conv_stem.weight, source.conv_stem.weight)


def test_wrong_weights_file_is_refused(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    with pytest.raises(WeightsError, match="resnet.pth"):
        build_classifier("efficientnet_b0", num_classes=3, pretrained=True, weights_file=str(path))


def test_scratch_is_random_init():
    model, weights = build_classifier("efficientnet_lite0", num_classes=3, pretrained=False)
    assert weights.source == "random"


def _trainable(model: Classifier) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_frozen_trains_only_the_head():
    model, _ = build_classifier("efficientnet_lite0", num_classes=4, pretrained=False)
    summary = get_strategy("frozen").apply(model, Unfreeze())
    assert _trainable(model) == {n for n, _ in model.named_parameters() if n.startswith("head.")}
    assert summary.frozen_batchnorms == sum(is_batchnorm(m) for m in model.backbone.modules())


def test_finetune_unfreezes_last_20_weight_layers_not_batchnorm():
    model, _ = build_classifier("efficientnet_lite0", num_classes=4, pretrained=False)
    summary = get_strategy("finetune").apply(model, Unfreeze(layers=20))
    expected = {name for name, _ in weight_layers(model.backbone)[-20:]}
    assert set(summary.unfrozen) == expected and len(expected) == 20
    assert "conv_head" in expected
    backbone_trainable = {n.removeprefix("backbone.").rsplit(".", 1)[0] for n in _trainable(model) if n.startswith("backbone.")}
    assert backbone_trainable == expected
    for module in model.backbone.modules():
        if is_batchnorm(module):
            assert not any(p.requires_grad for p in module.parameters())


def test_finetune_by_whole_blocks():
    model, _ = build_classifier("efficientnet_lite0", num_classes=4, pretrained=False)
    get_strategy("finetune").apply(model, Unfreeze(blocks=2))
    trainable = {n for n in _trainable(model) if n.startswith("backbone.")}
    convs = ("conv_pw", "conv_dw", "conv_pwl")
    last_two_blocks = {f"backbone.blocks.{b}.{c}.weight" for b in ("5.3", "6.0") for c in convs}
    assert trainable == {"backbone.conv_head.weight", *last_two_blocks}  # timm groups conv_head with the last block
    with pytest.raises(ValueError, match="unfreeze_blocks"):
        unfreeze_last_blocks(model.backbone, 500)


def test_scratch_trains_everything():
    model, _ = build_classifier("efficientnet_lite0", num_classes=4, pretrained=False)
    summary = get_strategy("scratch").apply(model, Unfreeze())
    assert summary.trainable_params == summary.total_params


def test_finetune_default_is_the_notebooks_trainable_set():
    """The notebook's last 20 Keras layers are block7a and top_conv: timm's last block group (last block + conv_head)."""
    from transferlab.config import TrainConfig

    config = TrainConfig(data="x", out="y", strategy="finetune")
    model, _ = build_classifier("efficientnet_lite0", 10, pretrained=False)
    get_strategy("finetune").apply(model, Unfreeze(config.unfreeze_layers, config.unfreeze_blocks))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("head.", "backbone.blocks.6.", "backbone.conv_head")) for n in trainable)
    assert any(n.startswith("backbone.conv_head") for n in trainable) and any(n.startswith("backbone.blocks.6.") for n in trainable)
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(data="x", out="y", unfreeze_layers=20, unfreeze_blocks=2)


def test_roomy_signal_stacks_of_ended_threads_are_freed():
    """A loader starts a thread each epoch; each that ran bf16 inference gets a 1 MiB signal stack, freed after it ends."""
    import ctypes
    import sys
    import threading

    from transferlab.models import runtime

    if not sys.platform.startswith("linux"):
        pytest.skip("alternate signal stacks are set on Linux only")

    def small_stack_then_roomy():
        small = ctypes.create_string_buffer(64 * 1024)  # as OpenVINO's bf16 inference leaves one, if smaller
        runtime._libc().sigaltstack(ctypes.byref(runtime._SignalStack(ctypes.addressof(small), 0, len(small))), None)
        runtime.roomy_signal_stack()
        given.append(threading.get_ident() in runtime._signal_stacks)
        runtime._libc().sigaltstack(ctypes.byref(runtime._SignalStack(None, runtime.SS_DISABLE, 0)), None)

    given: list[bool] = []
    before = len(runtime._signal_stacks)
    for _ in range(5):
        thread = threading.Thread(target=small_stack_then_roomy)
        thread.start()
        thread.join()
    assert given == [True] * 5
    assert len(runtime._signal_stacks) <= before + 1
