"""The eight random augmentations of the course, one small transform each: draw params, then apply.

Every op works on uint8 RGB tensors (C, H, W). `sample(image, generator)` draws plain, JSON-ready
params from an explicit `torch.Generator`; `apply(image, params)` only calls
`torchvision.transforms.v2.functional`, so re-applying recorded params reproduces the image.
`at_level(image, level)` gives fixed params from the weakest (0) to the strongest (1) setting, for
the gallery. Labels never change. As v2 transforms, ops also work alone (global RNG, p ignored).
"""

import functools
import math
from typing import Any, ClassVar

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

Params = dict[str, Any]
FILL_MODES = ("reflect", "symmetric", "edge", "constant")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def _uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _range(value: float | tuple[float, float], name: str, minimum: float | None = None) -> tuple[float, float]:
    """One number `v` becomes (-v, v); a pair is checked to be ordered (and above `minimum`)."""
    low, high = (-abs(value), abs(value)) if isinstance(value, (int, float)) else tuple(map(float, value))
    if low > high:
        raise ValueError(f"{name}: range ({low}, {high}) has its minimum above its maximum")
    if minimum is not None and low < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {low}")
    return float(low), float(high)


def _to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """A float tensor the op computed (and owns) rounded in place, clamped and converted to uint8."""
    return pixels.round_().clamp_(0, 255).to(torch.uint8)


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return value


# fill mode -> (grid_sample padding mode, align_corners): reflection about the border pixels' centres is numpy's
# "reflect", about their outer edges "symmetric".
GRID_PADDING = {"reflect": ("reflection", True), "symmetric": ("reflection", False), "edge": ("border", False),
                "constant": ("zeros", False)}


def affine_with_fill(image: torch.Tensor, angle: float, dx: float, dy: float, fill_mode: str) -> torch.Tensor:
    """Rotate by `angle` degrees (counter-clockwise, about the centre) and shift by (dx, dy) fractions of width/height,
    filling as Keras does; torchvision's `F.affine` geometry.

    One bilinear `grid_sample` over the output pixels only, with the fill as its padding mode: no padded copy to warp
    and crop (1.2 instead of 2.6-3.9 ms at 224 px), and no black corners where a padding would run out.
    """
    height, width = image.shape[-2:]
    padding, align_corners = GRID_PADDING[fill_mode]
    pixels = image.reshape(1, -1, height, width).float()
    grid = _sampling_grid(height, width, angle, dx, dy, align_corners)
    warped = torch.nn.functional.grid_sample(pixels, grid, mode="bilinear", padding_mode=padding, align_corners=align_corners)
    return _to_uint8(warped.reshape(image.shape))


def _sampling_grid(height: int, width: int, angle: float, dx: float, dy: float, align_corners: bool) -> torch.Tensor:
    """`grid_sample`'s (1, H, W, 2) grid: where each output pixel's centre comes from, in [-1, 1] coordinates.

    The map is affine in the output pixel's (x, y), so each coordinate is one broadcast sum of a row and a column
    written into the grid (0.15 against 0.43 ms at 224 px, computing it elementwise over the whole grid)."""
    radians = math.radians(angle)
    cos, sin = math.cos(radians), math.sin(radians)
    shift_x, shift_y = -dx * width, -dy * height
    if align_corners:  # input pixel centre -> [-1, 1] with the border pixels' centres at +-1
        scale_x, scale_y = 2 / (width - 1), 2 / (height - 1)
    else:  # with the border pixels' outer edges at +-1
        scale_x, scale_y = 2 / width, 2 / height
    xs, ys = _centred_axes(height, width)
    grid = torch.empty(1, height, width, 2, dtype=torch.float32)
    # input x = cos * (x + shift_x) + sin * (y + shift_y), input y = cos * (y + shift_y) - sin * (x + shift_x)
    torch.add(xs * (cos * scale_x), ys * (sin * scale_x) + (cos * shift_x + sin * shift_y) * scale_x, out=grid[0, :, :, 0])
    torch.add(xs * (-sin * scale_y), ys * (cos * scale_y) + (cos * shift_y - sin * shift_x) * scale_y, out=grid[0, :, :, 1])
    return grid


@functools.lru_cache(maxsize=16)
def _centred_axes(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Output pixel centres relative to the image centre: a (W,) row of x and a (H, 1) column of y."""
    xs = torch.arange(width, dtype=torch.float32) + 0.5 - width / 2
    ys = torch.arange(height, dtype=torch.float32).view(height, 1) + 0.5 - height / 2
    return xs, ys


class RandomOp(v2.Transform):
    """Base of the eight ops: a probability `p`, and sample/apply/at_level/caption hooks."""

    name: ClassVar[str]

    def __init__(self, p: float = 1.0):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{self.name}.p: probability must be in [0, 1], got {p}")
        self.p = p

    def sample(self, image: torch.Tensor, generator: torch.Generator | None) -> Params:
        raise NotImplementedError

    def apply(self, image: torch.Tensor, params: Params) -> torch.Tensor:
        raise NotImplementedError

    def at_level(self, image: torch.Tensor, level: float) -> Params:
        raise NotImplementedError

    def caption(self, params: Params) -> str:
        raise NotImplementedError

    def changes(self, params: Params) -> bool:
        """False when `params` leave the image as it is (the op then counts as skipped)."""
        return True

    def make_params(self, flat_inputs: list[Any]) -> Params:
        return self.sample(flat_inputs[0], None)

    def transform(self, inpt: Any, params: Params) -> Any:
        return self.apply(inpt, params)


class Rotation(RandomOp):
    """Rotate by a random angle. `factor` is Keras's: a fraction of a full turn (0.15 -> ±54°)."""

    name = "rotation"

    def __init__(self, degrees: float | tuple[float, float] | None = None, factor: float | None = None,
                 fill_mode: str = "reflect", p: float = 1.0):
        super().__init__(p)
        if (degrees is None) == (factor is None):
            raise ValueError("rotation: give exactly one of degrees or factor")
        self.degrees = _range(degrees if degrees is not None else factor * 360.0, "rotation.degrees")
        self.fill_mode = _check_choice(fill_mode, FILL_MODES, "rotation.fill_mode")

    def sample(self, image, generator):
        return {"angle": _uniform(generator, *self.degrees)}

    def apply(self, image, params):
        return affine_with_fill(image, params["angle"], 0.0, 0.0, self.fill_mode)

    def at_level(self, image, level):
        return {"angle": level * self.degrees[1]}

    def caption(self, params):
        return f"rot {params['angle']:+.0f}°"


class Translation(RandomOp):
    """Shift by random fractions of the height and width (0 disables an axis)."""

    name = "translation"

    def __init__(self, height: float = 0.1, width: float = 0.1, fill_mode: str = "reflect", p: float = 1.0):
        super().__init__(p)
        self.height = _range(height, "translation.height")
        self.width = _range(width, "translation.width")
        if max(map(abs, self.height + self.width)) > 1:
            raise ValueError("translation: height and width are fractions, at most 1")
        self.fill_mode = _check_choice(fill_mode, FILL_MODES, "translation.fill_mode")

    def sample(self, image, generator):
        return {"dx": _uniform(generator, *self.width), "dy": _uniform(generator, *self.height)}

    def apply(self, image, params):
        return affine_with_fill(image, 0.0, params["dx"], params["dy"], self.fill_mode)

    def at_level(self, image, level):
        return {"dx": level * self.width[1], "dy": level * self.height[1]}

    def caption(self, params):
        return f"shift {params['dx'] * 100:+.0f}%/{params['dy'] * 100:+.0f}%"


class Crop(RandomOp):
    """Crop a random area (`scale` of the image, aspect in `ratio`), then resize back to the original size."""

    name = "crop"

    def __init__(self, scale: tuple[float, float] = (0.6, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 p: float = 1.0):
        super().__init__(p)
        self.scale = _range(scale, "crop.scale", minimum=1e-3)
        if self.scale[1] > 1:
            raise ValueError(f"crop.scale: at most 1, got {self.scale[1]}")
        self.ratio = _range(ratio, "crop.ratio", minimum=1e-3)

    def _box(self, image: torch.Tensor, area: float, ratio: float, cx: float, cy: float) -> Params:
        height, width = image.shape[-2:]
        crop_w = min(width, max(1, round(math.sqrt(area * height * width * ratio))))
        crop_h = min(height, max(1, round(math.sqrt(area * height * width / ratio))))
        top = round(cy * (height - crop_h))
        left = round(cx * (width - crop_w))
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def sample(self, image, generator):
        area = _uniform(generator, *self.scale)
        log_ratio = _uniform(generator, math.log(self.ratio[0]), math.log(self.ratio[1]))
        return self._box(image, area, math.exp(log_ratio), _uniform(generator, 0, 1), _uniform(generator, 0, 1))

    def apply(self, image, params):
        size = list(image.shape[-2:])
        return F.resized_crop(image, params["top"], params["left"], params["height"], params["width"], size,
                              interpolation=v2.InterpolationMode.BILINEAR, antialias=True)

    def at_level(self, image, level):
        height, width = image.shape[-2:]
        area = self.scale[1] - level * (self.scale[1] - self.scale[0])
        return self._box(image, area, width / height, 0.5, 0.5)

    def caption(self, params):
        return f"crop {params['width']}×{params['height']}"


class Flip(RandomOp):
    """Flip horizontally, vertically, or each of both with probability 1/2 (Keras RandomFlip)."""

    name = "flip"
    MODES = ("horizontal", "vertical", "both")

    def __init__(self, mode: str = "both", p: float = 1.0):
        super().__init__(p)
        self.mode = _check_choice(mode, self.MODES, "flip.mode")

    def sample(self, image, generator):
        horizontal = self.mode != "vertical" and bool(torch.rand((), generator=generator) < 0.5)
        vertical = self.mode != "horizontal" and bool(torch.rand((), generator=generator) < 0.5)
        return {"horizontal": horizontal, "vertical": vertical}

    def apply(self, image, params):
        if params["horizontal"]:
            image = F.horizontal_flip(image)
        if params["vertical"]:
            image = F.vertical_flip(image)
        return image

    def at_level(self, image, level):
        horizontal_allowed, vertical_allowed = self.mode != "vertical", self.mode != "horizontal"
        if level <= 0:
            return {"horizontal": False, "vertical": False}
        if level < 1:
            return {"horizontal": horizontal_allowed, "vertical": not horizontal_allowed}
        return {"horizontal": horizontal_allowed, "vertical": vertical_allowed}

    def changes(self, params):
        return params["horizontal"] or params["vertical"]

    def caption(self, params):
        if not self.changes(params):
            return "no flip"
        return "flip " + ("H" if params["horizontal"] else "") + ("V" if params["vertical"] else "")


class Contrast(RandomOp):
    """(x − mean)·f + mean per channel, f drawn from 1 ± `factor` (or a (min, max) range)."""

    name = "contrast"

    def __init__(self, factor: float | tuple[float, float] = 0.1, p: float = 1.0):
        super().__init__(p)
        self.factor = (1 - abs(factor), 1 + abs(factor)) if isinstance(factor, (int, float)) else _range(factor, "contrast.factor")
        if self.factor[0] < 0:
            raise ValueError(f"contrast.factor: the factor range must stay >= 0, got {self.factor}")

    def sample(self, image, generator):
        return {"factor": _uniform(generator, *self.factor)}

    def apply(self, image, params):
        pixels = image.to(torch.float32, copy=True)
        mean = pixels.mean(dim=(-2, -1), keepdim=True)
        return _to_uint8(pixels.sub_(mean).mul_(params["factor"]).add_(mean))  # in place: the same values, 25 % faster

    def at_level(self, image, level):
        return {"factor": 1 + level * (self.factor[1] - 1)}

    def caption(self, params):
        return f"contrast ×{params['factor']:.2f}"


class GaussianNoise(RandomOp):
    """Add Gaussian noise; its sigma (fraction of the 0–255 range) is drawn from `sigma`."""

    name = "noise"

    def __init__(self, sigma: float | tuple[float, float] = (0.0, 0.05), p: float = 1.0):
        super().__init__(p)
        self.sigma = (0.0, float(sigma)) if isinstance(sigma, (int, float)) else _range(sigma, "noise.sigma")
        if self.sigma[0] < 0:
            raise ValueError(f"noise.sigma: must be >= 0, got {self.sigma}")

    def sample(self, image, generator):
        seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
        return {"sigma": _uniform(generator, *self.sigma), "seed": seed}

    def apply(self, image, params):
        noise_rng = torch.Generator().manual_seed(params["seed"])
        noise = torch.randn(image.shape, generator=noise_rng) * (params["sigma"] * 255.0)
        return _to_uint8(image.float() + noise)

    def at_level(self, image, level):
        return {"sigma": level * self.sigma[1], "seed": 0}

    def caption(self, params):
        return f"noise σ{params['sigma'] * 255:.0f}"


class ChannelBrightness(RandomOp):
    """Add an independent offset to each colour channel, drawn from ±`delta` (fraction of 0–255)."""

    name = "brightness"

    def __init__(self, delta: float | tuple[float, float] = 0.1, p: float = 1.0):
        super().__init__(p)
        self.delta = _range(delta, "brightness.delta")

    def sample(self, image, generator):
        return {"offsets": [_uniform(generator, *self.delta) for _ in range(image.shape[-3])]}

    def apply(self, image, params):
        offsets = torch.tensor(params["offsets"], dtype=torch.float32).view(-1, 1, 1) * 255.0
        return _to_uint8(image.float() + offsets)

    def at_level(self, image, level):
        return {"offsets": [level * self.delta[1], 0.0, -level * self.delta[1]][: image.shape[-3]]}

    def caption(self, params):
        return "RGB " + "/".join(f"{o * 100:+.0f}" for o in params["offsets"]) + "%"


class Downsample(RandomOp):
    """Shrink by a random factor, then resize back to the original size (loses detail, keeps the frame)."""

    name = "downsample"

    def __init__(self, factor: tuple[float, float] = (1.0, 3.0), interpolation: str = "bilinear", p: float = 1.0):
        super().__init__(p)
        self.factor = _range(factor, "downsample.factor", minimum=1.0)
        self.interpolation = _check_choice(interpolation, INTERPOLATIONS, "downsample.interpolation")

    def sample(self, image, generator):
        return {"factor": _uniform(generator, *self.factor)}

    def apply(self, image, params):
        height, width = image.shape[-2:]
        mode = v2.InterpolationMode(self.interpolation)
        small = [max(1, round(height / params["factor"])), max(1, round(width / params["factor"]))]
        if small == [height, width]:
            return image
        return F.resize(F.resize(image, small, interpolation=mode, antialias=True), [height, width],
                        interpolation=mode, antialias=True)

    def at_level(self, image, level):
        return {"factor": self.factor[0] + level * (self.factor[1] - self.factor[0])}

    def caption(self, params):
        return f"down ÷{params['factor']:.1f}"


OPS: dict[str, type[RandomOp]] = {
    op.name: op for op in (Rotation, Translation, Crop, Flip, Contrast, GaussianNoise, ChannelBrightness, Downsample)
}
