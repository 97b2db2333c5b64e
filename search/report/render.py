"""render_report: one self-contained HTML page (images inline, no network) from the computed parts."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import jinja2


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return (
            f"{value:.4g}"
            if abs(value) < 1e-2 or abs(value) >= 1e4
            else f"{value:.4f}".rstrip("0").rstrip(".")
        )
    return str(value)


def render_report(path: Path, figures: dict[str, bytes], **context: Any) -> Path:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("search.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["cell"] = _cell
    encoded = {name: base64.b64encode(png).decode("ascii") for name, png in figures.items()}
    html = environment.get_template("report.html").render(figures=encoded, **context)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
