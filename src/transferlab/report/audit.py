"""audit.html: one self-contained page of an audit's findings, thumbnails inlined, grouped by finding."""

import base64
import functools
import io
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from ..audits.findings import ISSUES, Audit
from ..files import write_atomic
from .jinja import environment

THUMBNAIL = 160
SHOWN = 60
"""Findings of one kind shown with thumbnails; audit.csv lists all."""


@functools.lru_cache(maxsize=1024)
def thumbnail(path: str) -> str | None:
    """A JPEG data URI of the photo, at most THUMBNAIL pixels on its longer side (None when it cannot be read); a
    JPEG decodes at the smallest scale that still covers it."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (THUMBNAIL, THUMBNAIL))
            image = ImageOps.exif_transpose(image).convert("RGB")
            image.thumbnail((THUMBNAIL, THUMBNAIL))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=80)
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def audit_context(audit: Audit, title: str) -> dict[str, Any]:
    findings = audit.findings
    copies = findings[findings["issue"].isin(["leak", "duplicate", "near-duplicate"])]
    groups = []
    for number, rows in copies.groupby("group", sort=True):
        first = rows.iloc[0]["suggested"]
        groups.append({
            "number": int(number), "kept": {"path": first, "uri": thumbnail(first)},
            "copies": [{"path": r.path, "issue": r.issue, "split": r.split, "score": r.score, "uri": thumbnail(r.path)} for r in rows.itertuples()],
        })
    labels = findings[findings["issue"] == "label"]
    off_topic = findings[findings["issue"] == "off-topic"]
    largest = max((sum(split.values()) for split in audit.counts.values()), default=1)
    return {
        "title": title,
        "summary": audit.summary(),
        "issues": ISSUES,
        "groups": groups[:SHOWN],
        "more_groups": max(0, len(groups) - SHOWN),
        "labels": [
            {"path": r.path, "label": r.label, "suggested": r.suggested, "score": r.score, "split": r.split, "uri": thumbnail(r.path),
             "evidence": [{"path": e, "uri": thumbnail(e)} for e in r.evidence]}
            for r in labels.head(SHOWN).itertuples()
        ],
        "more_labels": max(0, len(labels) - SHOWN),
        "off_topic": [{"path": r.path, "label": r.label, "score": r.score, "split": r.split, "uri": thumbnail(r.path)} for r in off_topic.head(SHOWN).itertuples()],
        "counts": [{"name": name, **split, "width": 100 * sum(split.values()) / max(1, largest)} for name, split in audit.counts.items()],
        "imbalance": audit.imbalance_line(),
    }


def write_audit(audit: Audit, out: Path, title: str) -> tuple[Path, Path]:
    """audit.html and audit.csv in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    page = environment().get_template("audit.html.j2").render(audit_context(audit, title))
    write_atomic(out / "audit.html", page)
    return out / "audit.html", audit.write_csv(out / "audit.csv")

