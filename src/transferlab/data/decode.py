"""Decode an image file into RGB, with clear errors for files that are not images or are broken.

JPEGs decode with torchvision.io (libjpeg-turbo, about 3x Pillow here), or with Pillow's draft mode
when the photo is at least twice the size needed; other formats decode with Pillow. EXIF orientation
is applied either way, and every mode becomes RGB with transparency composed over white.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP"})
MAX_PIXELS = 89_478_485
"""Refuse larger images (Pillow's decompression-bomb threshold: a 0.25 GiB RGB image). Pillow's own limit is left
as it is (it is the user's process): past it Pillow warns, past twice it refuses to open the file (reported as an
`ImageTooLargeError`, as is the warning where warnings are errors)."""


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; the message names the file and the reason."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Greyscale, 16-bit, palette, CMYK and alpha images become RGB; transparency is composed over white."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I"):
        image = image.point(lambda value: value / 256).convert("L")
    return image.convert("RGB")


class NotAnImageError(UnreadableImageError):
    """Content that is no image, or an image format transferlab does not decode."""


class ImageTooLargeError(UnreadableImageError):
    """More pixels than `MAX_PIXELS`: refused before decoding."""


def _check_opened(image: Image.Image, name: str) -> None:
    if image.format not in SUPPORTED_FORMATS:
        raise NotAnImageError(f"{name}: unsupported format {image.format} (supported: JPEG, PNG, WebP, BMP)")
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} pixels is over the limit of {MAX_PIXELS:,} (a possible decompression bomb); refused"
        )


def _decode_error(name: str, data: bytes | None, error: Exception) -> UnreadableImageError:
    if isinstance(error, FileNotFoundError):
        return UnreadableImageError(f"{name}: file not found")
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):  # the warning: where warnings are errors
        return ImageTooLargeError(f"{name}: over Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} pixels (a possible decompression bomb); refused")
    if isinstance(error, UnidentifiedImageError):
        if not data:
            return UnreadableImageError(f"{name}: empty file (0 bytes)")
        return NotAnImageError(f"{name}: not an image file (its content is no known image format)")
    return UnreadableImageError(f"{name}: cannot decode image ({error})")


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning)


def _to_rgb_image(image: Image.Image) -> Image.Image:
    """An opened, checked image decoded: EXIF orientation, RGB."""
    image = ImageOps.exif_transpose(image)
    image.load()
    return to_rgb(image)


@contextmanager
def open_checked(data: bytes, name: str, draft_size: int | None = None) -> Iterator[Image.Image]:
    """The image in `data`, opened but not decoded: format and pixel limit checked, and for a JPEG the reduced
    scale of `draft_size` chosen, so its `size` is what decoding gives. Decode errors in the block name `name`.

    Raises `NotAnImageError` (no image, unsupported format), `ImageTooLargeError`, or `UnreadableImageError`.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_opened(image, name)
            if draft_size and image.format in ("JPEG", "MPO"):
                image.draft("RGB", (draft_size, draft_size))
            yield image
    except UnreadableImageError:
        raise
    except _DECODE_ERRORS as error:
        raise _decode_error(name, data, error) from None


def decode_bytes(data: bytes, name: str, draft_size: int | None = None) -> Image.Image:
    """The bytes of an image file as an RGB PIL image, EXIF orientation applied; `name` is used in errors
    (`open_checked` says which)."""
    with open_checked(data, name, draft_size) as image:
        return _to_rgb_image(image)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise _decode_error(str(path), None, error) from None


def load_rgb(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Open `path` as an RGB PIL image, EXIF orientation applied.

    `draft_size` lets JPEG decoding shrink by a power of two while both sides stay at least that size.
    """
    path = Path(path)
    return decode_bytes(_read(path), str(path), draft_size)


def load_uint8(path: str | Path, min_size: int | None = None) -> torch.Tensor:
    """Decode `path` to an RGB uint8 tensor (3, H, W), EXIF orientation applied; the fast path for training.
    The file is read once; `decode_uint8` says how it is decoded."""
    path = Path(path)
    return decode_uint8(_read(path), str(path), min_size)


def decode_uint8(data: bytes, name: str, min_size: int | None = None) -> torch.Tensor:
    """The bytes of an image file as an RGB uint8 tensor (3, H, W), EXIF orientation applied; `name` is used in errors.

    With `min_size`, a JPEG at least twice that on its short side decodes at a reduced scale by Pillow (short side
    >= min_size); other JPEGs decode with torchvision.io, the rest with Pillow.
    (PyTorch loads here, not with the module: checking and scanning photos need Pillow only.)
    """
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2.functional import pil_to_tensor

    with open_checked(data, name) as image:
        shrinks = min_size is not None and min(image.size) >= 2 * min_size
        if image.format != "JPEG" or shrinks:
            if shrinks:
                image.draft("RGB", (min_size, min_size))
            return pil_to_tensor(_to_rgb_image(image))
    try:
        return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB, apply_exif_orientation=True)
    except RuntimeError as error:
        reason = str(error).rsplit(", ", 1)[-1]
        raise UnreadableImageError(f"{name}: cannot decode JPEG ({reason})") from None


def check_image(path: str | Path) -> str | None:
    """Why `path` cannot be used as a photo, or None when it decodes completely (JPEGs at 1/8 scale: fast)."""
    try:
        load_rgb(path, draft_size=1)
    except UnreadableImageError as error:
        return str(error).removeprefix(f"{path}: ")
    return None
