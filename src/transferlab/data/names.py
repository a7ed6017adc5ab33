"""Readable class names from folder names."""

import re

_WORDNET_PREFIX = re.compile(r"^n\d{8}[-_]")


def readable_name(folder_name: str) -> str:
    """`n02099601-golden_retriever` -> `golden retriever`; other names only lose underscores."""
    name = _WORDNET_PREFIX.sub("", folder_name)
    return " ".join(name.replace("_", " ").split())


def wordnet_id(folder_name: str) -> str | None:
    """The WordNet id a folder name starts with (`n02099601`), or None."""
    match = _WORDNET_PREFIX.match(folder_name)
    return match.group(0)[:-1] if match else None
