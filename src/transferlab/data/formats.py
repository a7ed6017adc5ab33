"""Which files are photos, by extension (no decoding, so scanning a folder needs no image library)."""

from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
UNSUPPORTED_EXTENSIONS = frozenset(
    {".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jp2", ".ico", ".svg", ".dng", ".cr2", ".nef", ".psd"}
)


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def is_unsupported_image_file(path: Path) -> bool:
    """A file whose extension says image, in a format transferlab does not decode (GIF, TIFF, HEIC...)."""
    return path.is_file() and path.suffix.lower() in UNSUPPORTED_EXTENSIONS
