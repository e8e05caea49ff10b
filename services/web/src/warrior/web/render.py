"""Rendering helpers: answers with highlighted code (Pygments), the dataset card (Markdown) and SVG plots."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

_FORMATTER = HtmlFormatter(cssclass="hl", wrapcode=True)
# A fenced block: ```lang\n ... ``` (an unclosed fence runs to the end, as a truncated answer does).
_FENCE = re.compile(r"```([A-Za-z0-9_+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def highlight_css() -> str:
    return str(_FORMATTER.get_style_defs(".hl"))


def _lexer(name: str, default: str) -> Any:
    for candidate in (name, default):
        try:
            return get_lexer_by_name((candidate or "").lower())
        except ClassNotFound:
            continue
    return TextLexer()


def code(source: str, language: str = "python") -> Markup:
    """One piece of code, highlighted."""
    return Markup(highlight(source, _lexer(language, "text"), _FORMATTER))


def answer(text: str, language: str = "python") -> Markup:
    """An answer: prose as preformatted text, each fenced block highlighted in its (or the battle's) language."""
    parts: list[str] = []
    position = 0
    for match in _FENCE.finditer(text):
        prose = text[position : match.start()]
        if prose.strip():
            parts.append(f'<pre class="prose">{escape(prose.strip(chr(10)))}</pre>')
        parts.append(highlight(match.group(2), _lexer(match.group(1), language), _FORMATTER))
        position = match.end()
    rest = text[position:]
    if rest.strip():
        parts.append(f'<pre class="prose">{escape(rest.strip(chr(10)))}</pre>')
    return Markup("".join(parts))


def markdown(text: str) -> Markup:
    """A dataset card (Markdown, raw HTML disabled)."""
    return Markup(_MARKDOWN.render(text))


def interval_plot(rows: Sequence[Mapping[str, Any]], *, width: int = 640, row_height: int = 26) -> Markup:
    """Each expert's rating as a dot on its 95% interval, one line per expert, best first, with an axis."""
    if not rows:
        return Markup("")
    label_w, pad = 150, 16
    values = [float(r[k]) for r in rows for k in ("ci_low", "ci_high", "rating")]
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 1.0, high + 1.0
    span = high - low
    low, high = low - 0.05 * span, high + 0.05 * span
    plot_w = width - label_w - pad
    height = row_height * len(rows) + 40

    def x(value: float) -> float:
        return round(label_w + (value - low) / (high - low) * plot_w, 1)

    out = [
        f'<svg id="interval-plot" data-testid="interval-plot" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="ratings with 95% intervals">'
    ]
    zero = x(0.0) if low <= 0.0 <= high else None
    if zero is not None:
        out.append(f'<line x1="{zero}" y1="4" x2="{zero}" y2="{height - 30}" stroke="#bbb" stroke-dasharray="3,3"/>')
    for i, r in enumerate(rows):
        y = 14 + i * row_height
        name = escape(str(r["expert"]))
        out.append(
            f'<g data-testid="interval" data-expert="{name}"><text x="{label_w - 8}" y="{y + 4}" text-anchor="end" '
            f'font-size="12">{name}</text>'
            f'<line x1="{x(r["ci_low"])}" y1="{y}" x2="{x(r["ci_high"])}" y2="{y}" stroke="#3465a4" stroke-width="3"/>'
            f'<circle cx="{x(r["rating"])}" cy="{y}" r="5" fill="#204a87"><title>{name}: {r["rating"]} '
            f"[{r['ci_low']}, {r['ci_high']}]</title></circle></g>"
        )
    axis_y = height - 26
    out.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" stroke="#555"/>')
    for k in range(5):
        value = low + (high - low) * k / 4
        out.append(
            f'<text x="{x(value)}" y="{axis_y + 16}" text-anchor="middle" font-size="11">{value:.0f}</text>'
            f'<line x1="{x(value)}" y1="{axis_y}" x2="{x(value)}" y2="{axis_y + 4}" stroke="#555"/>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def pass_bars(before: float, after: float, width: int = 220) -> Markup:
    """Two horizontal bars: pass@1 before (grey) and after (blue), on a 0..1 scale."""
    b, a = max(0.0, min(1.0, before)), max(0.0, min(1.0, after))
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="30" role="img" '
        f'aria-label="pass@1 {before:.3f} before, {after:.3f} after">'
        f'<rect x="0" y="2" width="{round(b * width, 1)}" height="11" fill="#999"/>'
        f'<rect x="0" y="17" width="{round(a * width, 1)}" height="11" fill="#3465a4"/></svg>'
    )


def ablation_comparisons(turn: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The arena-trained model against each ablation's, paired over problems: (label, paired record)."""
    return [
        (f"trained - {kind}", ablation["paired"]["trained_minus_ablation"])
        for kind, ablation in (turn.get("ablations") or {}).items()
    ]
