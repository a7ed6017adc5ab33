"""The Jinja environment of the pages transferlab writes (report.html, report.md, audit.html)."""

import html
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).parent / "templates"


def _markdown_text(value: Any) -> str:
    """A value as Markdown text: no raw HTML (Markdown renders it) and no table-breaking pipe."""
    return html.escape(str(value), quote=False).replace("|", "\\|")


def environment(markdown: bool = False) -> jinja2.Environment:
    """Every value a template prints is escaped: HTML-escaped for report.html, made inert text for report.md.
    Class names and CSV labels come from the user's files."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=not markdown,
        finalize=_markdown_text if markdown else None,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["pct"] = lambda value: "–" if value is None else f"{100 * value:.1f}%"
    return environment
