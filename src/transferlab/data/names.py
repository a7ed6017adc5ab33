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


DOG_WORDNET_IDS = range(2085620, 2113979)
"""WordNet ids of ImageNet's dog breeds, n02085620 (Chihuahua) to n02113978 (Mexican hairless)."""
OTHER_DOG_WORDNET_IDS = frozenset({2115641, 2115913, 2116738})
"""The dingo, dhole and African hunting dog, which Stanford Dogs adds."""


def _is_dog(folder: str) -> bool:
    number = wordnet_id(folder)
    return number is not None and (int(number[1:]) in DOG_WORDNET_IDS or int(number[1:]) in OTHER_DOG_WORDNET_IDS)


def class_noun(folders: "list[str] | tuple[str, ...]") -> str:
    """What the classes are called in words shown to people: "breed" when every class is a dog breed's WordNet id
    (Stanford Dogs, Imagewoof), else "class"."""
    return "breed" if folders and all(_is_dog(folder) for folder in folders) else "class"


def plural(noun: str) -> str:
    return "classes" if noun == "class" else f"{noun}s"
