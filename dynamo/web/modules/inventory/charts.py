"""Bar charts as inline SVG, drawn on the server: no script, no external library, no network."""

from __future__ import annotations

from dynamo.web.modules._html import esc

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac")
ROW = 22
LABEL = 220
WIDTH = 560


def key_order(rows: list[tuple[str, list[tuple[str, float]]]]) -> list[str]:
    keys: list[str] = []
    for _, parts in rows:
        for key, _ in parts:
            if key not in keys:
                keys.append(key)
    return keys


def stacked_bars(title: str, rows: list[tuple[str, list[tuple[str, float]]]], unit: str,
                 colours_of: list[str] | None = None, legend: bool = True) -> str:
    """One horizontal bar per row, stacked by key; a legend of the keys below. ``colours_of``: the
    keys in the order that gives them their colours (so that two charts agree)."""
    keys = key_order(rows)
    order = colours_of or keys
    colour = {k: PALETTE[order.index(k) % len(PALETTE)] if k in order else PALETTE[0] for k in keys}
    if not legend:
        keys = []
    top = max((sum(v for _, v in parts) for _, parts in rows), default=0.) or 1.
    legend_rows = (len(keys) + 3) // 4
    height = 30 + ROW * len(rows) + 20 * legend_rows + 10
    out = [f'<svg class="chart" role="img" aria-label="{esc(title)}" '
           f'width="{LABEL + WIDTH + 90}" height="{height}"><title>{esc(title)}</title>',
           f'<text x="0" y="16" font-weight="bold">{esc(title)}</text>']
    y = 30
    for label, parts in rows:
        out.append(f'<text x="{LABEL - 6}" y="{y + 14}" text-anchor="end">{esc(label)}</text>')
        x = float(LABEL)
        total = 0.
        for key, value in parts:
            w = WIDTH * value / top
            out.append(f'<rect class="bar" x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{ROW - 6}" '
                       f'fill="{colour[key]}"><title>{esc(label)} / {esc(key)}: {value:.3f} {esc(unit)}</title></rect>')
            x += w
            total += value
        out.append(f'<text x="{x + 4:.1f}" y="{y + 14}">{total:.3f} {esc(unit)}</text>')
        y += ROW
    y += 10
    for i, key in enumerate(keys):
        lx = (i % 4) * 200
        ly = y + (i // 4) * 20
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour[key]}"/>'
                   f'<text x="{lx + 16}" y="{ly + 11}">{esc(key)}</text>')
    out.append("</svg>")
    return "".join(out)
