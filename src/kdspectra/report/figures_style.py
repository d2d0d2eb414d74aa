"""What every figure of the project shares: the canvas, the stamp, the two saved variants.

Figures are built with matplotlib's object-oriented API on the Agg canvas (``Figure``,
never ``pyplot``), so rendering needs no display, keeps no global state between rules
and cannot leak figures in long-running processes.

Two variants of every figure are saved (:func:`save`):

- the **screen** PNG (≥ 150 dpi, the Snakemake report): a bold title, a subtitle (what was
  run), the random-init notice in red above the plot, and the provenance footer;
- the **print** PDF (:func:`print_variant`): no title (a paper's caption carries it), the
  axes grown into the freed space, and ONE small footer line holding the random-init /
  miniature notice (when there is one) and the provenance, so the PDF can go into a paper
  as is and still never loses the notice.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.text import Text

from kdspectra import registry
from kdspectra.errors import ArtifactError, ConfigError
from kdspectra.io import PathLike, save_figure
from kdspectra.report.provenance import Provenance
from kdspectra.report.render import human_params

DPI = 200


class _ByArm(Mapping[str, str]):
    """Objective or objective arm (:func:`kdspectra.registry.parse_arm`) → a value, so
    ``OBJECTIVE_LABELS.get(name, default)`` works for ``cosine_infonce_w0.3_mlp`` as for
    ``cosine``; iterates over the registered objectives; a name that is no arm is missing."""

    def __init__(self, value: Callable[[registry.Arm], str]) -> None:
        self._value = value

    def __getitem__(self, name: str) -> str:
        try:
            arm = registry.parse_arm(name)
        except ConfigError:
            raise KeyError(name) from None
        return self._value(arm)

    def __iter__(self) -> Iterator[str]:
        return iter(registry.objective_names())

    def __len__(self) -> int:
        return len(registry.objective_names())


def arm_colour(arm: registry.Arm) -> str:
    """An objective's registered colour; an arm with a λ a shade of a sequential map that
    darkens with λ (plasma without the head, viridis with it), so a sweep reads in order.
    A head without a λ takes viridis' middle."""
    if arm.weight is None and arm.projector == "none":
        return registry.objective(arm.objective).colour
    cmap = colormaps["viridis" if arm.projector == "mlp" else "plasma"]
    t = 0.5 if arm.weight is None else arm.weight / (arm.weight + 0.3)
    return to_hex(cmap(0.85 - 0.75 * t))


# Labels and colours of the objectives and their arms (one colour per arm in every figure).
OBJECTIVE_LABELS: Mapping[str, str] = _ByArm(lambda arm: arm.label)
OBJECTIVE_COLOURS: Mapping[str, str] = _ByArm(arm_colour)
# Figures 2 and 4 draw each objective twice: the paper's raw ER and the ER of L2-normalised
# rows, so a radial (norm) collapse is told from a real one.
ER_VARIANTS = {"effective_rank": "raw", "effective_rank_l2": "L2 rows"}
PRINT_TOP = 0.97  # the print variant's axes reach up to here (figure fraction)
PRINT_FOOTER_SIZE = 5.5


@dataclass
class Stamp:
    """The texts :func:`stamp` wrote, so :func:`print_variant` can swap them for one line."""

    header: list[Text] = field(default_factory=list)
    footer: Text | None = None
    print_line: str = ""  # the print variant's single footer line


def new_figure(
    title: str, provenance: Provenance | None, subtitle: str | None = None
) -> tuple[Figure, Axes]:
    """Figure with one axes under the stamp (title, subtitle, notice) and over the footer."""
    fig = Figure(figsize=(7.0, 4.8))
    FigureCanvasAgg(fig)  # headless Agg canvas: no display, no pyplot global state
    ax = fig.add_axes((0.11, 0.17, 0.86, 0.65))
    stamp(fig, title, provenance, subtitle)
    return fig, ax


def stamp(
    fig: Figure,
    title: str,
    provenance: Provenance | None,
    subtitle: str | None = None,
    *,
    width: int = 72,
    line: float = 0.045,
    footer_y: float = 0.01,
) -> Stamp:
    """Write every figure's header and footer: the bold title (wrapped at ``width``
    characters, ``line`` of the figure's height per line), the subtitle, the red
    random-init notice (if any) and the provenance footer, so that no figure of the
    project can leave one out. Kept on the figure for :func:`print_variant`."""
    record = Stamp()
    y = 0.975
    title = textwrap.fill(title, width=width)
    record.header.append(
        fig.text(0.5, y, title, ha="center", va="top", fontsize=11, fontweight="bold")
    )
    y -= line * (title.count("\n") + 1)
    if subtitle:
        record.header.append(
            fig.text(0.5, y, subtitle, ha="center", va="top", fontsize=8.5, color="0.2")
        )
        y -= 0.04
    notice = provenance.notice() if provenance is not None else ""
    if notice:
        record.header.append(
            fig.text(0.5, y, notice, ha="center", va="top", fontsize=8, color="red")
        )
    if provenance is not None:
        record.footer = fig.text(
            0.01, footer_y, provenance.footer(), ha="left", va="bottom", fontsize=5.5, color="0.4"
        )
    parts = (f"⚠ {notice}" if notice else "", provenance.footer() if provenance else "")
    record.print_line = " · ".join(x for x in parts if x)
    fig.kdspectra_stamp = record  # type: ignore[attr-defined]
    return record


@contextmanager
def print_variant(fig: Figure) -> Iterator[Text | None]:
    """Inside the block, ``fig`` is its print variant: header and footer hidden, the axes
    stretched upwards to :data:`PRINT_TOP` (:func:`_print_stretch`), and one footer line (yielded)
    with the notice and the provenance; everything is restored on exit."""
    record: Stamp | None = getattr(fig, "kdspectra_stamp", None)
    if record is None:
        yield None
        return
    hidden = [t for t in (*record.header, record.footer) if t is not None]
    positions = [(ax, ax.get_position()) for ax in fig.axes]
    anchor, factor = _print_stretch(fig)
    line = None
    try:
        for t in hidden:
            t.set_visible(False)
        for ax, pos in positions:
            y0 = anchor + (pos.y0 - anchor) * factor
            ax.set_position((pos.x0, y0, pos.width, pos.height * factor))
        if record.print_line:
            colour = "darkred" if record.print_line.startswith("⚠") else "0.35"
            line = fig.text(
                0.01, 0.005, record.print_line, ha="left", va="bottom",
                fontsize=PRINT_FOOTER_SIZE, color=colour,
            )  # fmt: skip
        yield line
    finally:
        if line is not None:
            line.remove()
        for t in hidden:
            t.set_visible(True)
        for ax, pos in positions:
            ax.set_position(pos)


def _print_stretch(fig: Figure) -> tuple[float, float]:
    """(anchor, factor) of the affine map y → anchor + (y − anchor)·factor that stretches
    the axes' layout upwards from its lowest bottom until the top, panel titles included,
    reaches :data:`PRINT_TOP` (titles keep their height in points)."""
    if not fig.axes:
        return 0.0, 1.0
    renderer = fig.canvas.get_renderer()
    to_fig = fig.transFigure.inverted()
    tops = [ax.get_position().y1 for ax in fig.axes]
    extents = [to_fig.transform(ax.get_tightbbox(renderer))[1, 1] for ax in fig.axes]
    above = max(e - t for e, t in zip(extents, tops, strict=True))  # titles over the axes
    anchor = min(ax.get_position().y0 for ax in fig.axes)
    return anchor, max(1.0, (PRINT_TOP - above - anchor) / max(max(tops) - anchor, 1e-6))


def save(fig: Figure, png: PathLike | None = None, pdf: PathLike | None = None) -> None:
    """Write the screen variant as PNG (at :data:`DPI`) and the print variant as PDF,
    atomically (see the module docstring)."""
    if png is not None:
        save_figure(fig, png, dpi=DPI)
    if pdf is not None:
        with print_variant(fig):
            save_figure(fig, pdf, dpi=DPI)


def require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """A figure's data table must be non-empty and have ``columns``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing or frame.empty:
        raise ArtifactError(f"{what}: needs a non-empty table with columns {list(columns)}")


def model_label(model: str, params: float) -> str:
    return f"{model}\n({human_params(params)})"


def subtitle(experiment: str | None, teacher: str | None) -> str | None:
    parts = [
        f"experiment {experiment}" if experiment else "",
        f"teacher {teacher}" if teacher else "",
    ]
    return " · ".join(p for p in parts if p) or None


def split_roles(data: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(student rows, teacher reference rows); tables without ``role`` are all students."""
    if "role" not in data.columns:
        return data, data.iloc[0:0]
    return data[data["role"] != "teacher"], data[data["role"] == "teacher"]
