"""Decode an image file into an RGB PIL image, with clear errors for files that are not images."""

from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; the message names the file and the reason."""


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def to_rgb(image: Image.Image) -> Image.Image:
    """Greyscale, palette, CMYK and alpha images become RGB; transparency is composed over white."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda value: value / 256).convert("L")
    return image.convert("RGB")


def load_rgb(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Open `path` as an RGB image, EXIF orientation applied.

    `draft_size` lets JPEG decoding shrink by a power of two while both sides stay at least that size.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image = ImageOps.exif_transpose(image)
            image.load()
            return to_rgb(image)
    except FileNotFoundError:
        raise UnreadableImageError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise UnreadableImageError(f"{path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(f"{path}: cannot decode image ({error})") from None
