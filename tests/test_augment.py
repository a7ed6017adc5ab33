"""The eight augmentation ops, pipelines with provenance, seeded determinism, and the gallery."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from transferlab.augment.gallery import gallery_figure, gallery_image, per_op_figure
from transferlab.augment.ops import (
    OPS,
    ChannelBrightness,
    Contrast,
    Crop,
    Downsample,
    Flip,
    GaussianNoise,
    Rotation,
    Translation,
    affine_with_fill,
)
from transferlab.augment.pipeline import (
    AugmentConfigError,
    Pipeline,
    build_augment,
    resolve_ops,
    seeded_generator,
)
from transferlab.augment.presets import PRESETS
from transferlab.data.datasets import PhotoDataset
from transferlab.data.sources import folder_source
from transferlab.models.classifier import DataConfig

images = st.builds(
    lambda h, w, seed: torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)),
    st.integers(8, 48), st.integers(8, 48), st.integers(0, 2**31),
)
seeds = st.integers(0, 2**31)

ZERO_STRENGTH = [
    Rotation(degrees=0), Translation(0, 0), Crop(scale=(1, 1), ratio=(1, 1)), Contrast(0),
    GaussianNoise(0), ChannelBrightness(0), Downsample((1, 1)),
]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> int:
    return (a.int() - b.int()).abs().max().item()


def test_all_eight_ops_exist():
    assert set(OPS) == {"rotation", "translation", "crop", "flip", "contrast", "noise", "brightness", "downsample"}


@pytest.mark.parametrize("op", ZERO_STRENGTH, ids=lambda op: op.name)
@settings(max_examples=20, deadline=None)
@given(image=st.builds(lambda s: torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8,
                                               generator=torch.Generator().manual_seed(s)), seeds), seed=seeds)
def test_zero_strength_is_identity(op, image, seed):
    out = op.apply(image, op.sample(image, torch.Generator().manual_seed(seed)))
    assert _max_diff(out, image) <= 1


@pytest.mark.parametrize("name", sorted(OPS))
@settings(max_examples=25, deadline=None)
@given(image=images, seed=seeds)
def test_shape_dtype_and_replay(name, image, seed):
    pipeline = Pipeline.from_config("seed-all")
    op = next(o for o in pipeline.ops if o.name == name)
    params = op.sample(image, torch.Generator().manual_seed(seed))
    out = op.apply(image, params)
    assert out.shape == image.shape and out.dtype == torch.uint8
    assert torch.equal(op.apply(image, params), out)


@settings(max_examples=40, deadline=None)
@given(image=images, seed=seeds, degrees=st.floats(0, 90), shift=st.floats(0, 0.5), factor=st.floats(0, 0.9),
       sigma=st.floats(0, 0.2), delta=st.floats(0, 0.5), down=st.floats(1, 4), scale=st.floats(0.1, 1))
def test_sampled_params_stay_in_range(image, seed, degrees, shift, factor, sigma, delta, down, scale):
    g = torch.Generator().manual_seed(seed)
    assert abs(Rotation(degrees=degrees).sample(image, g)["angle"]) <= degrees
    params = Translation(shift, shift).sample(image, g)
    assert abs(params["dx"]) <= shift and abs(params["dy"]) <= shift
    assert 1 - factor <= Contrast(factor).sample(image, g)["factor"] <= 1 + factor
    assert 0 <= GaussianNoise(sigma).sample(image, g)["sigma"] <= sigma
    assert all(abs(o) <= delta for o in ChannelBrightness(delta).sample(image, g)["offsets"])
    assert 1 <= Downsample((1, down)).sample(image, g)["factor"] <= down
    box = Crop(scale=(scale, 1)).sample(image, g)
    h, w = image.shape[-2:]
    assert 0 <= box["top"] <= h - box["height"] and 0 <= box["left"] <= w - box["width"]


def test_keras_factor_is_a_fraction_of_a_turn():
    assert Rotation(factor=0.15).degrees == (-54.0, 54.0)
    with pytest.raises(ValueError, match="exactly one"):
        Rotation(degrees=10, factor=0.1)


@settings(max_examples=20, deadline=None)
@given(image=images)
def test_flip_twice_is_identity(image):
    flip = Flip("both")
    both = {"horizontal": True, "vertical": True}
    assert torch.equal(flip.apply(flip.apply(image, both), both), image)
    assert not torch.equal(flip.apply(image, {"horizontal": True, "vertical": False}), image) or torch.equal(image, image.flip(-1))


def test_noise_has_mean_zero():
    image = torch.full((3, 128, 128), 128, dtype=torch.uint8)
    out = GaussianNoise(0.1).apply(image, {"sigma": 0.1, "seed": 3})
    difference = out.float() - 128
    assert abs(difference.mean().item()) < 0.5 and 20 < difference.std().item() < 30


def test_brightness_moves_each_channel_on_its_own():
    image = torch.full((3, 8, 8), 100, dtype=torch.uint8)
    out = ChannelBrightness(0.2).apply(image, {"offsets": [0.1, 0.0, -0.2]})
    assert out[0].unique().tolist() == [126] and out[1].unique().tolist() == [100] and out[2].unique().tolist() == [49]
    offsets = ChannelBrightness(0.2).sample(image, torch.Generator().manual_seed(0))["offsets"]
    assert len(set(offsets)) == 3


def test_contrast_is_keras_formula():
    image = torch.tensor([[[100, 200]]], dtype=torch.uint8).expand(3, 1, 2).contiguous()
    out = Contrast(0.5).apply(image, {"factor": 1.5})
    assert out[0, 0].tolist() == [75, 225]


def test_provenance_lists_applied_ops_and_replays():
    image = torch.randint(0, 256, (3, 32, 40), dtype=torch.uint8)
    pipeline = Pipeline.from_config("seed-all")
    for i in range(20):
        out, record = pipeline.run(image, seeded_generator(7, 0, i))
        assert [r["op"] for r in record] == [o.name for o in pipeline.ops if o.name in {r["op"] for r in record}]
        assert torch.equal(pipeline.replay(image, record), out)
    never = Pipeline.from_config([{"op": "noise", "p": 0.0}])
    assert never.run(image, seeded_generator(0, 0, 0))[1] == []


def test_batches_get_independent_params():
    batch = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    out, records = Pipeline.from_config("seed-keras").run_batch(batch, torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and len(records) == 4
    assert len({str(r) for r in records}) == 4


def test_presets_and_overrides():
    assert build_augment("none") is None
    assert all(build_augment(name) is not None for name in PRESETS if name != "none")  # config.py relies on it
    assert [c["op"] for c in resolve_ops("seed-keras")] == ["rotation", "translation", "flip", "contrast"]
    assert len(resolve_ops("seed-all")) == 8
    ops = resolve_ops("seed-keras", ["rotation.factor=0.2", "noise.sigma=[0, 0.1]"])
    assert ops[0] == {"op": "rotation", "factor": 0.2} and ops[-1] == {"op": "noise", "sigma": [0, 0.1]}
    assert build_augment("seed-keras", ["rotation.factor=0.2"]).ops[0].degrees == (-72.0, 72.0)


def test_ops_from_a_yaml_file(tmp_path):
    path = tmp_path / "aug.yaml"
    path.write_text("augment:\n  - op: flip\n    mode: horizontal\n  - op: contrast\n    factor: 0.3\n    p: 0.5\n")
    pipeline = build_augment(str(path))
    assert [op.name for op in pipeline.ops] == ["flip", "contrast"] and pipeline.ops[1].p == 0.5


@pytest.mark.parametrize(
    ("augment", "overrides", "fragment"),
    [
        ("wild", [], "seed-keras"),
        ("seed-keras", ["rotation"], "op.param=value"),
        ("seed-keras", ["spin.angle=3"], "spin"),
        ("seed-keras", ["rotation.fctor=3"], "fctor"),
        ("seed-keras", ["contrast.factor=[2, 1]"], "contrast.factor"),
        ("seed-keras", ["flip.p=2"], "flip.p"),
    ],
)
def test_bad_augment_config_is_named(augment, overrides, fragment):
    with pytest.raises(AugmentConfigError, match=fragment.replace(".", r"\.").replace("[", r"\[")):
        build_augment(augment, overrides)


def test_same_seed_same_images_across_runs_and_workers(image_tree):
    index = folder_source(image_tree({"a": 4, "b": 4}), val_fraction=0.25)
    config = DataConfig(32, "bilinear", 1.0, (0.5,) * 3, (0.5,) * 3)

    def epoch_batches(workers: int, seed: int) -> list[torch.Tensor]:
        dataset = PhotoDataset(index.train, config, build_augment("seed-all"), seed=seed)
        keys = [(i, 1) for i in range(len(dataset))]
        loader = torch.utils.data.DataLoader(dataset, batch_size=3, sampler=keys, num_workers=workers)
        return [images for images, _ in loader]

    first = epoch_batches(0, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(first, epoch_batches(0, seed=5)))
    assert all(torch.equal(a, b) for a, b in zip(first, epoch_batches(2, seed=5)))
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch_batches(0, seed=6)))


def test_gallery_captions_every_tile(image_tree, tmp_path):
    root = image_tree({"a": 2, "b": 2})
    image, path = gallery_image(root, image_size=48, seed=0)
    assert image.shape == (3, 48, 48) and path.is_file()
    figure = gallery_figure(image, build_augment("seed-all"), n=5, seed=1)
    titles = [ax.get_title() for ax in figure.axes]
    assert len(titles) == 6 and titles[0] == "original" and all(titles)
    assert any("rot" in t for t in titles[1:])
    per_op = per_op_figure(image, build_augment("seed-keras"))
    assert len(per_op.axes) == 4 * 4
    assert per_op.axes[3].get_title().startswith("strongest: rot +54°")


def test_gallery_cli_writes_png(image_tree, tmp_path):
    from typer.testing import CliRunner

    from transferlab.cli import app

    root = image_tree({"a": 2, "b": 2})
    out = tmp_path / "g.png"
    result = CliRunner().invoke(app, ["augment", "show", str(root), "--preset", "seed-all", "--n", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(app, ["augment", "show", str(root), "--augment-set", "spin.x=1"])
    assert bad.exit_code == 2 and "spin" in bad.output


def test_train_config_takes_a_list_of_ops():
    from pydantic import ValidationError

    from transferlab.config import TrainConfig

    config = TrainConfig(data="d", out="o", augment=[{"op": "flip", "mode": "horizontal"}], augment_set=["flip.p=0.5"])
    assert build_augment(config.augment, config.augment_set).ops[0].p == 0.5
    with pytest.raises(ValidationError, match="unknown augmentation op"):
        TrainConfig(data="d", out="o", augment=[{"op": "spin"}])


def test_affine_warp_has_torchvision_geometry_and_fills_every_corner():
    """The one-pass warp puts pixels where torchvision's F.affine does, and a reflected fill leaves no black corner
    even when a large rotation and shift combine."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    generator = torch.Generator().manual_seed(0)
    image = (torch.rand(3, 48, 64, generator=generator) * 200 + 40).to(torch.uint8)
    expected = F.affine(image, angle=30.0, translate=[0.1 * 64, -0.05 * 48], scale=1.0, shear=[0.0, 0.0],
                        interpolation=InterpolationMode.BILINEAR)
    warped = affine_with_fill(image, 30.0, 0.1, -0.05, "constant")
    assert (warped.int() - expected.int()).abs().max() <= 1
    for mode in ("reflect", "symmetric", "edge"):
        assert affine_with_fill(image, -54.0, 0.1, 0.1, mode).min() >= 40, mode


@pytest.mark.parametrize("mean, std", [((0.5,) * 3, (0.5,) * 3), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
def test_normalize_matches_torchvision_and_takes_only_uint8(mean, std):
    """The one-pass normalisation gives torchvision's values for a channels-last view and for a batch, returns a new
    contiguous tensor, and refuses float input (which it would scale by 1/255 a second time)."""
    from torchvision.transforms import v2

    from transferlab.data.datasets import normalize

    config = DataConfig(224, "bicubic", 0.875, mean, std)
    reference = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    photo = torch.randint(0, 256, (40, 30, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).permute(2, 0, 1)
    normalized = normalize(config)(photo)
    assert normalized.is_contiguous() and normalized.dtype == torch.float32
    assert torch.allclose(normalized, reference(photo), atol=1e-6)
    batch = torch.stack([photo, photo.flip(-1)])
    assert torch.allclose(normalize(config)(batch), reference(batch), atol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        normalize(config)(photo.float())


def test_ops_leave_the_callers_image_alone():
    """Ops compute in place on their own copies: a float image given to one is not changed."""
    image = torch.rand(3, 24, 30) * 255
    before = image.clone()
    for op in (Contrast(0.5), Rotation(0.2)):
        op.apply(image, op.sample(image, torch.Generator().manual_seed(0)))
    assert torch.equal(image, before)


@pytest.mark.parametrize("content, fragment", [
    ("- op: rotation\n  factor: [0.1\n", "ops.yaml: not valid YAML (line 3, column 1:"),
    ("- op: rotate\n", "ops.yaml: unknown augmentation op 'rotate'"),
    ("- op: rotation\n  factr: 0.1\n", "ops.yaml: rotation: unknown setting(s) factr; settings: degrees, factor"),
    ("- op: rotation\n  factor: abc\n", "ops.yaml: rotation: factor='abc': a value of the wrong kind"),
])
def test_a_bad_augmentation_file_is_named_with_what_is_wrong(tmp_path, content, fragment):
    """A YAML syntax error was a traceback; a value of the wrong kind was called an unknown setting."""
    path = tmp_path / "ops.yaml"
    path.write_text(content)
    with pytest.raises(AugmentConfigError) as error:
        resolve_ops(str(path))
    assert fragment in str(error.value)


def test_a_missing_augmentation_file_and_a_bad_override_value_say_so():
    with pytest.raises(AugmentConfigError, match="nothere.yaml: no such file"):
        resolve_ops("nothere.yaml")
    with pytest.raises(AugmentConfigError, match=r"'\[0.1' is not a value"):
        resolve_ops("seed-keras", ["rotation.factor=[0.1"])


def test_brackets_in_an_error_survive_the_cli(tmp_path):
    """Errors print through rich: '[0.1' in a message was eaten as markup."""
    from typer.testing import CliRunner

    from transferlab.cli import app

    result = CliRunner().invoke(app, ["train", str(tmp_path), "--augment-set", "rotation.factor=[0.1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "'[0.1' is not a value (a number, a word or a [list])" in result.output
