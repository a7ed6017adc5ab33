import pytest
import torch

from transferlab.augment.pipeline import PRESETS, build_augment


def test_none_is_no_augmentation():
    assert build_augment("none") is None


def test_seed_keras_keeps_shape_and_dtype_and_changes_pixels():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    augment = build_augment("seed-keras")
    out = augment(image)
    assert out.shape == image.shape and out.dtype == torch.uint8
    assert any(not torch.equal(augment(image), image) for _ in range(5))


def test_unknown_preset_lists_known():
    with pytest.raises(ValueError, match="seed-keras"):
        build_augment("wild")
    assert {"none", "seed-keras"} <= set(PRESETS)
