"""Grad-CAM: it points at the object, depends on the trained weights, and is reachable from the API and the CLI."""

import copy

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from typer.testing import CliRunner

import transferlab
from transferlab.cli import app
from transferlab.explain.gradcam import ExplainError, grad_cam

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def classifier(woof_frozen_run):
    return transferlab.load(woof_frozen_run.path)


def val_photos(woof_mini, n: int) -> list:
    """`n` validation photos, one breed after another."""
    by_breed = [sorted(folder.iterdir()) for folder in sorted((woof_mini / "val").iterdir()) if folder.is_dir()]
    return [by_breed[i % len(by_breed)][i // len(by_breed)] for i in range(n)]


def on_wide_canvas(clf, photo, left: bool) -> torch.Tensor:
    """The photo as the model sees it, pasted into one half of a blank (mid-grey) canvas twice its width, normalised."""
    view = clf.view(photo)
    canvas = torch.full((3, view.shape[1], 2 * view.shape[2]), 128, dtype=torch.uint8)
    start = 0 if left else view.shape[2]
    canvas[:, :, start : start + view.shape[2]] = view
    return clf._normalize(canvas).unsqueeze(0)


def test_the_heatmap_points_at_the_photo_in_a_wide_canvas(classifier, woof_mini):
    """Pasted into the left half, the photo's predicted class draws its Grad-CAM mass to the left; pasted into the
    right half, to the right."""
    for photo in val_photos(woof_mini, 5):
        target = int(np.argmax(classifier.probabilities(classifier.preprocess(photo).unsqueeze(0))[0]))
        for left in (True, False):
            heatmap = grad_cam(classifier.model, on_wide_canvas(classifier, photo, left), [target])[0]
            half = heatmap.shape[1] // 2
            left_mass, right_mass = heatmap[:, :half].sum(), heatmap[:, half:].sum()
            assert (left_mass > right_mass) == left, (photo.name, left, left_mass, right_mass)


def test_heatmaps_of_a_randomised_head_differ_from_the_trained_ones(classifier, woof_mini):
    """Adebayo et al.'s model-randomisation check: re-initialising the head's weights changes the maps."""
    photos = val_photos(woof_mini, 8)
    batch = torch.stack([classifier.preprocess(p) for p in photos])
    targets = [int(row.argmax()) for row in classifier.probabilities(batch)]
    trained = grad_cam(classifier.model, batch, targets)
    randomised = copy.deepcopy(classifier.model)
    torch.manual_seed(0)
    randomised.head[-1].reset_parameters()
    random_maps = grad_cam(randomised, batch, targets)
    same = [spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(trained, grad_cam(classifier.model, batch, targets))]
    changed = [np.nan_to_num(spearmanr(a.ravel(), b.ravel())[0]) for a, b in zip(trained, random_maps)]
    assert min(same) > 0.999
    assert np.mean(changed) < 0.5, changed


def test_explain_returns_arrays_and_figures(classifier, woof_mini, tmp_path):
    photos = val_photos(woof_mini, 3)
    explanations = classifier.explain(photos, top_k=2)
    assert len(explanations) == 3
    for explanation, photo in zip(explanations, photos):
        size = classifier.config.image_size
        assert explanation.heatmap.shape == (size, size) and 0 <= explanation.heatmap.min() and explanation.heatmap.max() <= 1
        assert explanation.image.shape == explanation.overlay.shape == (size, size, 3)
        assert explanation.explained == explanation.predictions[0].class_name and len(explanation.predictions) == 2
        assert explanation.path == str(photo)
    other = classifier.explain(photos[0], class_name=classifier.names[5])[0]
    assert other.explained == classifier.classes[5]
    assert not np.allclose(other.heatmap, explanations[0].heatmap)
    assert explanations[0].save(tmp_path / "one.png").stat().st_size > 10_000
    with pytest.raises(ExplainError, match="unknown class 'no such class'"):
        classifier.explain(photos[0], class_name="no such class")

    both = classifier.explain([photos[0]] * 2, top_k=2, class_name=[None, classifier.names[5]])  # one pass, a class each
    assert [e.explained for e in both] == [explanations[0].explained, classifier.classes[5]]
    assert np.allclose(both[0].heatmap, explanations[0].heatmap, atol=1e-5) and np.allclose(both[1].heatmap, other.heatmap, atol=1e-5)
    with pytest.raises(ExplainError, match="2 class names for 3 photos"):
        classifier.explain(photos, class_name=["a", "b"])


def test_tlab_explain_writes_overlays_and_skips_unreadable_photos(woof_frozen_run, woof_mini, tmp_path):
    photos = val_photos(woof_mini, 2)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    out = tmp_path / "explained"
    result = runner.invoke(app, ["explain", str(woof_frozen_run.path), str(photos[0]), str(broken), str(photos[1]), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "skipped" in result.output and "broken.jpg" in result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}.gradcam.png" for p in photos)


def test_an_exported_model_cannot_be_explained_and_says_so(woof_frozen_run, woof_mini, tmp_path):
    onnx = tmp_path / "model.onnx"
    assert runner.invoke(app, ["export", str(woof_frozen_run.path), "--out", str(onnx), "--photos", "4"]).exit_code == 0
    result = runner.invoke(app, ["explain", str(onnx), str(val_photos(woof_mini, 1)[0])])
    assert result.exit_code == 2 and "no gradients" in result.output


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "efficientnet_b0", "timm:resnet18"])
def test_grad_cam_works_for_every_kind_of_backbone(backbone):
    from transferlab.models.classifier import build_classifier

    model, _ = build_classifier(backbone, 3, pretrained=False)
    images = torch.randn(2, 3, 96, 96)
    maps = grad_cam(model, images, [0, 2])
    assert maps.shape == (2, 96, 96) and np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
