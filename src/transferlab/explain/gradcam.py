"""Grad-CAM (Selvaraju et al., 2017) by captum's `LayerGradCam` on the feature map that enters the head.

The head of every `Classifier` starts by pooling `backbone.forward_features(images)`, the backbone's last
convolutional stage, so that map is the target layer for Lite0, B0 and any convolutional `timm:` backbone alike.
captum was chosen over pytorch-grad-cam: it is pure Python on what we already install (pytorch-grad-cam pulls in
OpenCV, which needs system GL libraries, and scikit-learn), and it is maintained with PyTorch.
"""

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from matplotlib import colormaps

from ..models.classifier import Classifier


class ExplainError(ValueError):
    """A model or request that cannot be explained; the message says why and what to do instead."""


def grad_cam(model: Classifier, images: torch.Tensor, targets: list[int]) -> np.ndarray:
    """(N, H, W) heatmaps in [0, 1] of normalised `images` (N, 3, H, W), one per image for its class in `targets`:
    ReLU of the gradient-weighted feature map, upsampled bilinearly to the image and scaled to its maximum (an
    all-zero map stays zero: nothing in the photo speaks for that class)."""
    if not isinstance(model, Classifier):
        raise ExplainError(f"Grad-CAM needs a transferlab Classifier, not {type(model).__name__}")
    model.eval()
    layer = model.head[0]
    explainer = LayerGradCam(model, layer)
    with torch.enable_grad():
        maps = explainer.attribute(images, target=list(targets), attribute_to_layer_input=True, relu_attributions=True)
    if maps.ndim != 4:
        raise ExplainError("Grad-CAM needs a convolutional backbone (a spatial feature map before the pooling)")
    maps = LayerAttribution.interpolate(maps.detach().float(), tuple(images.shape[-2:]), interpolate_mode="bilinear")
    maps = maps[:, 0].clamp_(min=0)
    peak = maps.flatten(1).amax(dim=1).clamp_(min=1e-12).view(-1, 1, 1)
    return (maps / peak).numpy().astype(np.float32)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """A (H, W, 3) uint8 photo with `heatmap` (H, W, in [0, 1]) laid over it in `colormap`, weighted by `alpha`."""
    colours = colormaps[colormap](np.clip(heatmap, 0, 1))[..., :3]
    blended = (1 - alpha) * image.astype(np.float32) / 255 + alpha * colours
    return (np.clip(blended, 0, 1) * 255).round().astype(np.uint8)
