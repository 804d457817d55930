"""``gpu-features plot``: candlesticks, confirmed swings, invalid bars and feature panels.

A chart is made from the store (features, validity, timestamps) and the bars
behind it (re-derived from the manifest's sources, like ``verify``). Swings
are exact: the reference engine re-runs the plotted stretch from the stored
checkpoint before it and reports every confirmation, so each swing is drawn
at its extreme bar (triangle) and at the bar that confirmed it (dot), joined
by a dotted line. Bars are placed by index (session gaps closed up), labelled
with their times. Headless (matplotlib's Agg backend); matplotlib is the
optional extra ``plot``. A chart holds at most :data:`MAX_PLOT_BARS` bars
(memory and time grow with every candle: 30,000 took 44 s and 1.5 GB), so
a longer range is refused with the setting to narrow it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from . import reference
from .config import FEATURE_NAMES
from .errors import GpuFeaturesError, StoreError
from .fileio import absolute, temp_sibling
from .sources import load_sources, store_bars
from .splits import parse_time
from .store import open_store

DEFAULT_FEATURES = ("range_z", "dist_to_prev_SH", "dist_to_prev_SL", "bars_since_SH_norm")
DEFAULT_LAST = 300
MAX_PLOT_BARS = 20_000
WIDTH_IN, PRICE_IN, PANEL_IN, DPI = 12.0, 4.0, 1.3, 100


@dataclasses.dataclass
class Swing:
    """One confirmed swing: ``kind`` "high" or "low"; bars are store positions."""

    kind: str
    extreme_bar: int
    extreme_price: float
    confirm_bar: int


@dataclasses.dataclass
class ChartData:
    """What a chart shows; returned so tests can check positions without reading pixels.

    Attributes:
        symbol: the series plotted.
        bars: ``[m] int64`` store positions of the plotted bars, in time order.
        timestamp, open, high, low, close: ``[m]`` per plotted bar.
        valid: ``[m] bool``.
        features: ``{name: [m] float32}`` of the chosen panels.
        swings: confirmed swings whose confirming bar is plotted.
        size_px: ``(width, height)`` of the PNG.
    """

    symbol: str
    bars: np.ndarray
    timestamp: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    valid: np.ndarray
    features: dict
    swings: list
    size_px: tuple


PNG_SOFTWARE = "gpu-features"  # the PNG "Software" text of every chart drawn here: how one is recognised


def png_software(path) -> str | None:
    """The ``Software`` text a PNG file carries (None for anything else: not a PNG, no such text)."""
    import struct

    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            while True:
                head = f.read(8)
                if len(head) < 8:
                    return None
                length, kind = struct.unpack(">I4s", head)
                if kind in (b"IDAT", b"IEND") or length > 1 << 20:
                    return None
                data = f.read(length)
                f.read(4)  # CRC
                if kind == b"tEXt" and data.split(b"\0", 1)[0] == b"Software":
                    return data.split(b"\0", 1)[1].decode("latin-1")
    except OSError:
        return None


def check_png(out, option: str = "--out") -> Path:
    """Refuse an output a chart may not be written to; returns it as an absolute path.

    Refused: a name without ``.png`` (matplotlib would pick another format from the suffix), a folder,
    a path inside a feature store or dataset (its folder holds only its own files), and an existing
    file that is not a chart this package drew (its PNG ``Software`` text says so): only our own files
    are replaced.
    """
    from .store import check_outside_artifact

    if Path(out).suffix.lower() != ".png":
        raise GpuFeaturesError(f"{option} {out}: plot writes PNG files, so the name must end in .png (like chart.png).")
    path = absolute(out)
    if path.is_dir():
        raise GpuFeaturesError(f"{option} {out} is a folder; give a file name like chart.png.")
    check_outside_artifact(path, f"{option} {out}", "write the chart elsewhere", GpuFeaturesError)
    if (path.exists() or path.is_symlink()) and not (png_software(path) or "").startswith(PNG_SOFTWARE):
        raise GpuFeaturesError(f"{option} {out} already exists and is not a chart gpu-features drew; refusing to "
                               "replace it, so choose another name (or move the file away).")
    return path


def save_png(fig, out, dpi: int) -> Path:
    """Write a matplotlib figure as the PNG ``out``, marked as ours, through a temporary sibling and a rename
    (a reader never sees half a chart; call :func:`check_png` first)."""
    import os

    out = absolute(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out, "tmp")
    try:
        fig.savefig(tmp, dpi=dpi, format="png", metadata={"Software": PNG_SOFTWARE})
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _parse_time(flag: str, text: str) -> int:
    from .splits import SplitError

    try:
        return parse_time(text, flag)
    except SplitError as err:
        if "outside" in str(err):  # an ISO time, but past what a store holds: that sentence says so
            raise GpuFeaturesError(str(err)) from None
        raise GpuFeaturesError(f"{flag} {text!r} is not an ISO 8601 time (UTC), like 2024-03-01 or "
                               "2024-03-01T14:30.") from None


def chart_data(store_dir, symbol: str | None = None, start: str | None = None, end: str | None = None,
               last: int | None = None, features=DEFAULT_FEATURES, sources=None, checksums: bool = True) -> ChartData:
    """Select bars of one symbol and collect everything a chart draws.

    Args:
        store_dir: the store.
        symbol: which series (default: the first).
        start, end: ISO times (UTC) bounding the chart, or ``last`` bars (default 300).
        features: feature panels, by name.
        sources: optional bar files replacing the manifest's sources.
        checksums: hash the store's files on open (see :func:`~gpu_features.store.open_store`).
    """
    if last is not None and not 1 <= last <= MAX_PLOT_BARS:
        raise GpuFeaturesError(f"--last {last} is out of range; a chart shows 1 .. {MAX_PLOT_BARS:,} bars.")
    store = open_store(store_dir, checksums=checksums)
    symbol = symbol or store.symbols[0]
    if symbol not in store.symbols:
        raise StoreError(f"{store_dir}: no symbol {symbol!r}; the store holds {', '.join(store.symbols)}.")
    unknown = [f for f in features if f not in FEATURE_NAMES]
    if unknown:
        raise GpuFeaturesError(f"unknown feature(s) {', '.join(unknown)}; choose from {', '.join(FEATURE_NAMES)}.")
    segs = [g for g in store.segments if g.name == symbol]
    positions = np.concatenate([np.arange(g.first, g.stop) for g in segs])
    ts = store.timestamps()[positions]
    if start or end:
        if last is not None:
            raise GpuFeaturesError("give either --start/--end or --last, not both.")
        lo = _parse_time("--start", start) if start else np.iinfo(np.int64).min
        hi = _parse_time("--end", end) if end else np.iinfo(np.int64).max
        keep = (ts >= lo) & (ts < hi)
    else:
        keep = np.zeros(len(ts), bool)
        keep[-(last or DEFAULT_LAST):] = True
    if int(keep.sum()) > MAX_PLOT_BARS:
        raise GpuFeaturesError(f"{int(keep.sum()):,} bars of {symbol} lie between --start and --end, more than a "
                               f"chart holds ({MAX_PLOT_BARS:,}); narrow the range.")
    if not keep.any():
        raise GpuFeaturesError(f"no bars of {symbol} in the chosen range; the series runs from "
                               f"{np.datetime64(int(ts[0]), 'ns')} to {np.datetime64(int(ts[-1]), 'ns')} (UTC).")
    chosen = positions[keep]
    loaded, why = load_sources(store, sources)
    bars = store_bars(store, loaded) if loaded is not None else None
    if bars is None:
        raise StoreError(f"{store_dir}: candlesticks need the bars behind the store, and {why or 'they do not match it'}.")
    feats = store.array("features")
    return ChartData(
        symbol=symbol, bars=chosen, timestamp=ts[keep], open=bars.open[chosen], high=bars.high[chosen],
        low=bars.low[chosen], close=bars.close[chosen], valid=store.array("valid")[chosen],
        features={f: feats[chosen, FEATURE_NAMES.index(f)] for f in features},
        swings=_swings(store, bars, chosen), size_px=_size_px(len(features)))


def _swings(store, bars, chosen: np.ndarray) -> list:
    """Every swing confirmed at a chosen bar, re-derived by the reference engine from stored checkpoints."""
    states = store.states()
    cps, cstate = states["checkpoint_bar"], states["checkpoint_state"]
    out = []
    # chosen is a union of stretches of segments; run each stretch from the checkpoint before it.
    seg_starts = np.array([g.first for g in store.segments], dtype=np.int64)
    breaks = np.flatnonzero((np.diff(chosen) != 1) | np.isin(chosen[1:], seg_starts)) + 1  # a roll restarts state
    for run in np.split(chosen, breaks):
        a, b = int(run[0]), int(run[-1]) + 1
        seg = next(g for g in store.segments if g.first <= a < g.stop)
        k = int(np.searchsorted(cps, a, side="right") - 1)  # segment starts are checkpoints
        p = int(cps[k])
        events: list = []
        n = b - p
        reference.run_series(bars.open[p:b].tolist(), bars.high[p:b].tolist(), bars.low[p:b].tolist(),
                             bars.close[p:b].tolist(), store.config, cstate[k], np.zeros((n, 10), np.float32),
                             np.zeros(n, bool), np.zeros(n, np.int8), events=events)
        to_store = seg.first - seg.start_index  # local index -> store position within this segment
        for j, code, ext_i, ext_p in events:
            if p + j >= a:
                out.append(Swing("high" if code == 1 else "low", int(ext_i) + to_store, float(ext_p), p + j))
    return out


def _size_px(n_panels: int) -> tuple:
    return int(round(WIDTH_IN * DPI)), int(round((PRICE_IN + PANEL_IN * n_panels) * DPI))


def render(data: ChartData, out) -> Path:
    """Draw ``data`` into a PNG of ``data.size_px`` pixels."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GpuFeaturesError("plotting needs matplotlib; install it with `pip install 'gpu-features[plot]'`.") from None
    check_png(out)
    n = len(data.features)
    w, h = data.size_px
    fig, axes = plt.subplots(1 + n, 1, figsize=(w / DPI, h / DPI), dpi=DPI, sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [PRICE_IN] + [PANEL_IN] * n})
    axes = axes[:, 0]
    x = np.arange(len(data.bars))
    up = data.close >= data.open
    ax = axes[0]
    ax.vlines(x, data.low, data.high, color="#555555", linewidth=0.6)
    for mask, colour in ((up, "#2e7d32"), (~up, "#c62828")):
        bottom = np.minimum(data.open, data.close)[mask]
        height = np.abs(data.close - data.open)[mask]
        ax.bar(x[mask], np.maximum(height, 1e-9), bottom=bottom, width=0.7, color=colour, linewidth=0)
    index = {int(b): i for i, b in enumerate(data.bars)}
    for s in data.swings:
        xc = index[s.confirm_bar]
        colour = "#1565c0" if s.kind == "high" else "#ef6c00"
        ax.plot(xc, data.close[xc], "o", color=colour, markersize=3)
        if s.extreme_bar in index:
            xe = index[s.extreme_bar]
            ax.plot(xe, s.extreme_price, "v" if s.kind == "high" else "^", color=colour, markersize=5)
            ax.plot([xe, xc], [s.extreme_price, data.close[xc]], ":", color=colour, linewidth=0.6)
    ax.set_title(f"{data.symbol}: {len(x)} bars, {len(data.swings)} confirmed swings "
                 "(triangle = extreme, dot = confirming bar; grey = invalid)", fontsize=9)
    for i, name in enumerate(data.features):
        axes[i + 1].plot(x, data.features[name], linewidth=0.7, color="#37474f")
        axes[i + 1].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
        axes[i + 1].tick_params(labelsize=7)
    for a in axes:
        for lo, hi in _runs(~data.valid):
            a.axvspan(lo - 0.5, hi - 0.5, color="#9e9e9e", alpha=0.25, linewidth=0)
    ticks = np.linspace(0, len(x) - 1, min(8, len(x))).astype(int)
    axes[-1].set_xticks(ticks)
    labels = [str(np.datetime64(int(data.timestamp[t]), "ns").astype("datetime64[m]")).replace("T", "\n")
              for t in ticks]
    axes[-1].set_xticklabels(labels, fontsize=7)
    ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.13, right=0.99, top=0.95, bottom=0.08, hspace=0.08)
    out = save_png(fig, out, DPI)
    plt.close(fig)
    return out


def _runs(mask: np.ndarray):
    """``(start, stop)`` of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2], edges[1::2]))
