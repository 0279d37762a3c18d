"""Inline SVG charts for the run report: no script, no font or image to fetch.

Each chart is a string of SVG markup to paste into the HTML. Every bar carries
`data-chart`, `data-label` and `data-value` attributes (the exact number drawn),
so tests and scrapers read the chart's data without parsing geometry, and a
`<title>` so hovering a bar shows its value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from claimsflow.text import money

ValueText = Callable[[float], str]

ROW_HEIGHT = 22
BAR_GAP = 4
GROUP_GAP = 10
LEGEND_HEIGHT = 24
VALUE_SPACE = 96  # room right of the longest bar for its value


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    values: Sequence[float]


def count_text(value: float) -> str:
    return f"{int(value):,}"


def money_text(cents: float) -> str:
    """Cents as dollars with thousands separators (integer arithmetic, no float rounding)."""
    return money(int(cents), symbol="$")


def percent_text(share: float) -> str:
    return f"{share:.1%}"


def bar_chart(
    chart: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    value_text: ValueText = count_text,
    width: int = 560,
    label_width: int = 190,
    bar_colors: Sequence[str] | None = None,
    empty: str = "Nothing to show for this run.",
) -> str:
    """Horizontal bars: one group per label, one bar per series (grouped when several).

    `bar_colors` colours each label's bar (single series only), e.g. one per status.
    """
    if not labels:
        return f'<p class="empty">{escape(empty)}</p>'
    bars_per_group = len(series)
    group_height = bars_per_group * ROW_HEIGHT + (bars_per_group - 1) * BAR_GAP
    legend = LEGEND_HEIGHT if bars_per_group > 1 else 0
    height = legend + len(labels) * (group_height + GROUP_GAP)
    plot = width - label_width - VALUE_SPACE
    largest = max((v for s in series for v in s.values), default=0) or 1
    parts = [_svg_open(chart, width, height)]
    if bars_per_group > 1:
        parts.append(_legend([(s.name, s.color) for s in series], x=label_width, y=4))
    for index, label in enumerate(labels):
        top = legend + index * (group_height + GROUP_GAP)
        parts.append(
            f'<text class="label" x="{label_width - 8}" y="{top + group_height / 2 + 4:.1f}" '
            f'text-anchor="end">{escape(_shorten(label, label_width // 7))}'
            f"<title>{escape(label)}</title></text>"
        )
        for n, one in enumerate(series):
            value = one.values[index]
            y = top + n * (ROW_HEIGHT + BAR_GAP)
            length = max(plot * value / largest, 1.5 if value else 0)
            color = bar_colors[index] if bar_colors and bars_per_group == 1 else one.color
            text = value_text(value)
            tip = f"{label} — {one.name}: {text}" if bars_per_group > 1 else f"{label}: {text}"
            parts.append(
                f'<g data-chart="{escape(chart)}" data-label="{escape(label)}" '
                f'data-series="{escape(one.name)}" data-value="{value:g}">'
                f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{ROW_HEIGHT}" '
                f'rx="3" fill="{color}"><title>{escape(tip)}</title></rect>'
                f'<text class="value" x="{label_width + length + 6:.1f}" '
                f'y="{y + ROW_HEIGHT / 2 + 4:.1f}">{escape(text)}</text></g>'
            )
    parts.append("</svg>")
    return "".join(parts)


def stacked_bar(
    chart: str,
    parts: Sequence[tuple[str, float, str]],
    *,
    value_text: ValueText = money_text,
    width: int = 560,
    empty: str = "Nothing to show for this run.",
) -> str:
    """One bar split into (name, value, colour) segments, with a legend of values and shares."""
    total = sum(v for _, v, _ in parts)
    if total <= 0:
        return f'<p class="empty">{escape(empty)}</p>'
    bar_height = 30
    legend_row = 20
    height = bar_height + 12 + legend_row * len(parts)
    out = [_svg_open(chart, width, height)]
    x = 0.0
    for name, value, color in parts:
        length = width * value / total
        share = value / total
        tip = f"{name}: {value_text(value)} ({percent_text(share)})"
        out.append(
            f'<g data-chart="{escape(chart)}" data-label="{escape(name)}" data-value="{value:g}">'
            f'<rect x="{x:.1f}" y="0" width="{length:.1f}" height="{bar_height}" fill="{color}">'
            f"<title>{escape(tip)}</title></rect></g>"
        )
        x += length
    for n, (name, value, color) in enumerate(parts):
        y = bar_height + 12 + n * legend_row
        out.append(
            f'<rect x="0" y="{y}" width="12" height="12" rx="2" fill="{color}"/>'
            f'<text class="label" x="18" y="{y + 10}">{escape(name)}: '
            f"{escape(value_text(value))} ({percent_text(value / total)})</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _svg_open(chart: str, width: int, height: float) -> str:
    return (
        f'<svg class="chart" role="img" '
        f'aria-label="{escape(chart)}" width="{width}" height="{height:.0f}" '
        f'viewBox="0 0 {width} {height:.0f}">'
    )


def _legend(items: Sequence[tuple[str, str]], *, x: int, y: int) -> str:
    out = []
    for name, color in items:
        out.append(
            f'<rect x="{x}" y="{y}" width="12" height="12" rx="2" fill="{color}"/>'
            f'<text class="label" x="{x + 18}" y="{y + 10}">{escape(name)}</text>'
        )
        x += 30 + 8 * len(name)
    return "".join(out)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
