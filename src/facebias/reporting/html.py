"""HTML reports from jinja2 templates (``reporting/templates``), self-contained: figures inline as base64 PNG.

Templates escape every value (autoescape), so a concept or experiment name can never break the page.
Filters: ``cell`` formats a table value (floats to 3 decimals, NaN empty) and ``inline_png`` turns a
PNG path into a data URI.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from facebias.reporting.files import write_text_atomic


def format_cell(value: Any) -> str:
    """Floats to 3 decimals without trailing zeros (NaN and None: empty); everything else as text."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return "" if value is None else str(value)


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


@lru_cache(maxsize=1)
def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("facebias.reporting", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["cell"] = format_cell
    env.filters["inline_png"] = png_data_uri
    return env


def render_html(template: str, path: Path, **context: Any) -> Path:
    """Render ``templates/<template>`` with ``context`` into ``path`` (atomically)."""
    return write_text_atomic(path, environment().get_template(template).render(**context))


def table_columns(rows: list[Mapping[str, Any]], columns: list[str] | None = None) -> list[str]:
    return list(columns or (rows[0].keys() if rows else []))
