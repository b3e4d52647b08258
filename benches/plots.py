"""The report's pictures, drawn from rows' raw `samples_ms` with matplotlib (its object API and Agg
canvas: no display, no pyplot state):
failover and recovery times per scenario (box and points, log scale) and the commit latency CDF.

`write(run, out_dir)` draws what the run has data for and returns the files; a plot without data is
skipped (and a stale file of that name removed, so the directory matches the report). matplotlib is
imported only here and only when drawing: without it, `unavailable()` says why and nothing is drawn.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benches.targets import Row, is_recovery, rows_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class PlotParams:
    dpi: int = 110  # resolution of the PNGs; dots per inch
    height_in: float = 5.0  # figure height; inches
    width_per_row_in: float = 0.9  # recovery plot width per row shown; inches
    min_width_in: float = 7.0  # narrowest figure; inches
    jitter: float = 0.12  # horizontal spread of the points over a box; fraction of a box slot
    seed: int = 5  # the jitter's random seed, so a file redrawn from the same data is the same file


PARAMS = PlotParams()
RECOVERY_FILE = "failover-times.png"
CDF_FILE = "commit-latency-cdf.png"
PEER_PREFIXES = ("etcd/", "swarm/", "pysyncobj/")


def _is_cdf_row(key: str) -> bool:
    return key in (
        "pysyncobj/3/sequential",
        "manager_api/3/leader",
        "etcd/3/leader",
        "etcd/3-mtls/leader",
    ) or (key.startswith("commit_latency/") and key.endswith("/sequential"))


@dataclass(frozen=True)
class Plot:
    file: str
    title: str  # also the image's alt text in the report
    select: Callable[[str], bool]  # which rows, by key
    draw: Callable[[Figure, list[Row], str, PlotParams], None]
    width_in: Callable[[int, PlotParams], float]  # figure width for n rows


def _recovery_width(n: int, params: PlotParams) -> float:
    return max(params.min_width_in, params.width_per_row_in * n + 2)


def _cdf_width(_: int, params: PlotParams) -> float:
    return params.min_width_in + 1


def unavailable() -> str | None:
    """None if plots can be drawn here, else why not."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed (pip install matplotlib, or the project's dev extra)"
    return None


def sampled(rows: list[Row], select: Callable[[str], bool]) -> list[Row]:
    """The selected rows that carry raw samples, in table order."""
    return [r for r in rows if select(r["key"]) and r.get("samples_ms") and not r.get("error")]


def write(run: Mapping[str, Any], out_dir: Path, params: PlotParams = PARAMS) -> list[Path]:
    """Draw each plot the run has samples for into `out_dir`; returns the files written."""
    if unavailable() is not None:
        return []
    from matplotlib.figure import Figure

    rows = rows_of(run)
    written: list[Path] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for plot in plots():
        path = out_dir / plot.file
        chosen = sampled(rows, plot.select)
        if not chosen:
            path.unlink(missing_ok=True)
            continue
        fig = Figure(figsize=(plot.width_in(len(chosen), params), params.height_in), layout="constrained")
        plot.draw(fig, chosen, plot.title, params)
        fig.savefig(path, dpi=params.dpi)  # a bare Figure draws on the Agg canvas
        written.append(path)
    return written


def plots() -> tuple[Plot, ...]:
    return (
        Plot(
            RECOVERY_FILE, "Failover and recovery times per scenario", is_recovery, _recovery, _recovery_width
        ),
        Plot(CDF_FILE, "Commit and write latency CDF", _is_cdf_row, _cdf, _cdf_width),
    )


def _color(key: str) -> str:
    return "tab:orange" if key.startswith(PEER_PREFIXES) else "tab:blue"


def _recovery(fig: Figure, rows: list[Row], title: str, params: PlotParams) -> None:
    ax = fig.subplots()
    data = [r["samples_ms"] for r in rows]
    positions = list(range(1, len(rows) + 1))
    ax.boxplot(data, positions=positions, widths=0.5, showfliers=False, medianprops={"color": "black"})
    rng = random.Random(params.seed)
    for x, row in zip(positions, rows, strict=True):
        xs = [x + rng.uniform(-params.jitter, params.jitter) * 2 for _ in row["samples_ms"]]
        ax.scatter(xs, row["samples_ms"], s=12, alpha=0.6, color=_color(row["key"]), zorder=3)
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis)
    ax.set_ylabel("ms from the disruption to service back (log scale)")
    ax.set_xticks(positions, [r["key"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_title(title)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.scatter([], [], color="tab:blue", label="Warren")
    ax.scatter([], [], color="tab:orange", label="peer (etcd, Swarm)")
    ax.legend(loc="upper left", fontsize=8)


def _cdf(fig: Figure, rows: list[Row], title: str, params: PlotParams) -> None:
    ax = fig.subplots()
    for row in rows:
        values = sorted(v for v in row["samples_ms"] if v > 0)
        if not values:
            continue
        n = len(values)
        fractions = [(i + 1) / n for i in range(n)]
        style = "--" if row["key"].startswith(PEER_PREFIXES) else "-"
        p50 = values[(n - 1) // 2]
        ax.step(values, fractions, where="post", linestyle=style, label=f"{row['key']} (p50 {p50:.2f} ms)")
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("latency, ms (log scale)")
    ax.set_ylabel("fraction of operations at or below")
    ax.set_ylim(0, 1.005)
    ax.set_title(title)
    ax.grid(which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def _plain_log_ticks(axis: Any) -> None:
    """Ticks at 1, 2, 5 × 10^n labelled as plain numbers (0.2, 1, 50), not 2×10^-1."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
