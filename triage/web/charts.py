"""Inline SVG drawn on the server: the per-slice probability chart and small probability bars."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from triage.db.queries import SlicePoint
from triage.domain import ANY, CLASSES

#: One colour per class, distinguishable on a dark background (and for most colour-blind readers).
CLASS_COLOURS: Mapping[str, str] = {
    "any": "#f5f5f5",
    "epidural": "#ff6b6b",
    "intraparenchymal": "#ffb347",
    "intraventricular": "#4dd2ff",
    "subarachnoid": "#b388ff",
    "subdural": "#7ee081",
}
ABBREVIATIONS: Mapping[str, str] = {
    "any": "ICH",
    "epidural": "EDH",
    "intraparenchymal": "IPH",
    "intraventricular": "IVH",
    "subarachnoid": "SAH",
    "subdural": "SDH",
}


@dataclass(frozen=True)
class ChartBox:
    """Size of the chart and its margins, in SVG user units."""

    width: int = 1100
    height: int = 300
    left: int = 52
    right: int = 16
    top: int = 14
    bottom: int = 40

    @property
    def plot_width(self) -> int:
        """Width of the plotting area."""
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        """Height of the plotting area."""
        return self.height - self.top - self.bottom


def _positions(slices: Sequence[SlicePoint]) -> tuple[list[float], str]:
    """The x value of each slice: z in mm when every slice has one, else its index."""
    if slices and all(s.z_position is not None for s in slices):
        return [float(s.z_position) for s in slices], "slice position z (mm)"  # type: ignore[arg-type]
    return [float(i) for i in range(len(slices))], "slice index"


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def probability_chart(slices: Sequence[SlicePoint], thresholds: Mapping[str, float] | None = None,
                      key_instance_uid: str | None = None, box: ChartBox | None = None) -> Markup:
    """An SVG line chart of P(class) along z for ``any`` and each subtype.

    Parameters
    ----------
    slices
        The slices with their probabilities (any order; drawn sorted by position).
    thresholds
        Per-class thresholds; the one of ``any`` is drawn as a dashed line.
    key_instance_uid
        The key slice, marked with a vertical line.
    box
        Size and margins.
    """
    box = box or ChartBox()
    if not slices:
        return Markup('<p class="empty">No per-slice predictions yet.</p>')
    xs, x_label = _positions(slices)
    order = sorted(range(len(slices)), key=lambda i: xs[i])
    lo, hi = xs[order[0]], xs[order[-1]]
    span = (hi - lo) or 1.0

    def sx(x: float) -> float:
        return box.left + (x - lo) / span * box.plot_width

    def sy(p: float) -> float:
        return box.top + (1.0 - p) * box.plot_height

    parts = [
        f'<svg class="chart" viewBox="0 0 {box.width} {box.height}" width="100%" role="img" '
        f'aria-label="Per-slice probability of hemorrhage along the scan" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{box.left}" y="{box.top}" width="{box.plot_width}" height="{box.plot_height}" '
        'fill="#11161c" stroke="#2a3440"/>',
    ]
    parts += _grid(box, sy)
    parts += _x_ticks(box, lo, hi, sx, x_label)
    if thresholds and ANY in thresholds:
        y = _fmt(sy(thresholds[ANY]))
        parts.append(
            f'<line class="threshold" x1="{box.left}" x2="{box.left + box.plot_width}" y1="{y}" y2="{y}" '
            f'stroke="#e5484d" stroke-dasharray="6 4" stroke-width="1"><title>threshold for any: '
            f'{thresholds[ANY]:.2f}</title></line>'
        )
    for i in order:
        if key_instance_uid and slices[i].sop_instance_uid == key_instance_uid:
            x = _fmt(sx(xs[i]))
            parts.append(
                f'<line class="key-slice" x1="{x}" x2="{x}" y1="{box.top}" y2="{box.top + box.plot_height}" '
                f'stroke="#ffd166" stroke-width="1.5"><title>key slice</title></line>'
            )
    for name in reversed(CLASSES):
        points = " ".join(f"{_fmt(sx(xs[i]))},{_fmt(sy(slices[i].probabilities[name]))}" for i in order)
        width = "2.5" if name == ANY else "1.6"
        parts.append(
            f'<polyline class="series series-{name}" data-class="{name}" fill="none" '
            f'stroke="{CLASS_COLOURS[name]}" stroke-width="{width}" stroke-linejoin="round" points="{points}">'
            f"<title>{escape(name)}</title></polyline>"
        )
    if len(slices) == 1:
        parts += [
            f'<circle cx="{_fmt(sx(xs[0]))}" cy="{_fmt(sy(slices[0].probabilities[name]))}" r="3" '
            f'fill="{CLASS_COLOURS[name]}"/>'
            for name in CLASSES
        ]
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escaped names only


def _grid(box: ChartBox, sy: Callable[[float], float]) -> list[str]:
    out = []
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _fmt(sy(p))
        out.append(f'<line x1="{box.left}" x2="{box.left + box.plot_width}" y1="{y}" y2="{y}" stroke="#2a3440"/>')
        out.append(f'<text x="{box.left - 6}" y="{y}" dy="4" text-anchor="end" fill="#9aa7b4" '
                   f'font-size="11">{p:.2f}</text>')
    return out


def _x_ticks(box: ChartBox, lo: float, hi: float, sx: Callable[[float], float], label: str) -> list[str]:
    out = []
    bottom = box.top + box.plot_height
    for k in range(6):
        x = lo + (hi - lo) * k / 5
        px = _fmt(sx(x))
        out.append(f'<line x1="{px}" x2="{px}" y1="{bottom}" y2="{bottom + 4}" stroke="#5b6b7a"/>')
        out.append(f'<text x="{px}" y="{bottom + 16}" text-anchor="middle" fill="#9aa7b4" '
                   f'font-size="11">{x:.0f}</text>')
    out.append(f'<text x="{box.left + box.plot_width / 2:.0f}" y="{box.height - 4}" text-anchor="middle" '
               f'fill="#9aa7b4" font-size="11">{escape(label)}</text>')
    return out


def probability_bar(p: float | None, threshold: float | None = None, *, width: int = 140,
                    colour: str = "#4dd2ff") -> Markup:
    """A small horizontal bar for one probability, with the threshold as a tick."""
    height = 10
    parts = [
        f'<svg class="pbar" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-hidden="true">',
        f'<rect width="{width}" height="{height}" rx="2" fill="#23303c"/>',
    ]
    if p is not None:
        parts.append(f'<rect width="{_fmt(max(0.0, min(1.0, p)) * width)}" height="{height}" rx="2" '
                     f'fill="{colour}"/>')
    if threshold is not None:
        x = _fmt(threshold * width)
        parts.append(f'<line x1="{x}" x2="{x}" y1="0" y2="{height}" stroke="#f5f5f5" stroke-width="1.5"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escaped names only
