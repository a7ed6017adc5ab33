"""Exact duplicates (the same bytes) and near-duplicates (re-encoded, resized, slightly cropped, recoloured or
mirrored copies), grouped; a group with photos in both splits is a train/validation leak.

A near-duplicate pair needs both: pooled features closer than `NEAR_COSINE`, which finds candidates quickly, and
perceptual hashes (imagehash's pHash, 64 bits) within `HASH_BITS`, which tells a copy from another photo of the same
subject. A mirrored copy counts: with flips among the training augmentations the model has seen it, so in the other
split it inflates validation accuracy like any copy; its hash is compared with the mirrored photo's.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

NEAR_COSINE = 0.9
HASH_BITS = 12
BLOCK = 1024
"""Rows of the similarity matrix computed at once (memory: BLOCK x N floats)."""


@dataclass(frozen=True)
class DuplicateGroup:
    """Photos (indices) that are copies of the first one; `exact` when all have the same bytes."""

    members: tuple[int, ...]
    exact: bool
    similarity: tuple[float, ...]
    """Cosine similarity of each member's feature to the first one's (1 for the first)."""


def exact_pairs(digests: Sequence[str]) -> list[tuple[int, int]]:
    """(first, other) for every photo whose content hash an earlier photo has."""
    first: dict[str, int] = {}
    pairs = []
    for index, digest in enumerate(digests):
        if digest in first:
            pairs.append((first[digest], index))
        else:
            first[digest] = index
    return pairs


def similar_pairs(features: np.ndarray, threshold: float = NEAR_COSINE) -> list[tuple[int, int, float]]:
    """(i, j, cosine) with i < j for every pair of L2-normalised features at least `threshold` alike."""
    pairs = []
    for start in range(0, len(features), BLOCK):
        block = features[start : start + BLOCK] @ features.T
        rows, columns = np.nonzero(block >= threshold)
        for row, column in zip(rows, columns):
            i = start + int(row)
            if i < column:
                pairs.append((i, int(column), float(block[row, column])))
    return pairs


def perceptual_hashes(path: str | Path) -> tuple[object, object]:
    """(pHash of the photo, pHash of its mirror image)."""
    import imagehash

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("L")
        image.thumbnail((256, 256))
        return imagehash.phash(image), imagehash.phash(ImageOps.mirror(image))


def duplicate_groups(
    paths: Sequence[str], digests: Sequence[str], features: np.ndarray,
    threshold: float = NEAR_COSINE, hash_bits: int = HASH_BITS,
) -> list[DuplicateGroup]:
    """Groups of copies: exact ones by content hash, near ones by features confirmed by perceptual hashes."""
    parent = list(range(len(paths)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    for i, j in exact_pairs(digests):
        join(i, j)
    hashes: dict[int, tuple[object, object] | None] = {}

    def hashed(i: int) -> tuple[object, object] | None:
        if i not in hashes:
            try:
                hashes[i] = perceptual_hashes(paths[i])
            except OSError:
                hashes[i] = None
        return hashes[i]

    for i, j, _ in similar_pairs(features, threshold):
        if digests[i] == digests[j]:
            continue
        a, b = hashed(i), hashed(j)
        if a is not None and b is not None and min(a[0] - b[0], a[0] - b[1]) <= hash_bits:
            join(i, j)
    members: dict[int, list[int]] = {}
    for i in range(len(paths)):
        members.setdefault(root(i), []).append(i)
    groups = []
    for group in members.values():
        if len(group) > 1:
            first = features[group[0]]
            groups.append(DuplicateGroup(
                members=tuple(group), exact=len({digests[i] for i in group}) == 1,
                similarity=tuple(float(features[i] @ first) for i in group),
            ))
    return groups
