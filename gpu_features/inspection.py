"""``inspect``: what a researcher should know about a store before trusting it.

Summary of the manifest, per-feature statistics over valid bars, swing
confirmation rates, time gaps per symbol, and warnings that name the setting
to try. Everything is computed from the manifest and the stored timestamps;
nothing is recomputed (that is ``verify``'s job). The work is linear in the
store's segments and symbols, and the printed per-symbol table and warnings
are capped (:data:`MAX_SYMBOL_ROWS`, :data:`MAX_WARNING_LINES`; ``--symbol``
shows any one), so a store of 100,000 symbols inspects in seconds. Text from
the data (symbol names, source paths) is printed with control characters escaped.
"""
from __future__ import annotations

import numpy as np

from .config import FEATURE_NAMES, FEATURE_RANGES
from .errors import StoreError, printable
from .store import Store, open_store

NEARLY_CONSTANT_STD = 0.01    # std below 1% of the feature's clip range
FAST_SWINGS_BARS = 3.0        # fewer bars than this per confirmed swing
LOW_VALID_SHARE = 0.5
SESSION_GAP_MINUTES = 30      # a gap longer than this is a session break, shorter ones are missing minutes
MAX_SYMBOL_ROWS = 50          # per-symbol rows printed (the result holds every symbol)
MAX_WARNING_LINES = 50        # warnings printed (the result holds every warning)


def time_gaps(ts: np.ndarray) -> dict:
    """Gaps between consecutive bars of one series: session breaks and missing minutes.

    Args:
        ts: ``[m] int64`` ns timestamps.

    Returns:
        ``{"step_s", "session_breaks", "missing_bar_gaps", "missing_bars", "largest_gap_h"}``;
        the step is the most common spacing.
    """
    if len(ts) < 2:
        return {"step_s": None, "session_breaks": 0, "missing_bar_gaps": 0, "missing_bars": 0, "largest_gap_h": 0.0}
    d = np.diff(ts)
    values, counts = np.unique(d, return_counts=True)
    step = int(values[np.argmax(counts)])
    session = d > SESSION_GAP_MINUTES * 60 * 1_000_000_000
    missing = (d > step) & ~session
    return {"step_s": step / 1e9, "session_breaks": int(session.sum()), "missing_bar_gaps": int(missing.sum()),
            "missing_bars": int(((d[missing] // step) - 1).sum()) if step > 0 else 0,
            "largest_gap_h": float(d.max() / 3.6e12)}


def inspect_store(path, symbol: str | None = None, checksums: bool = True) -> dict:
    """Collect the inspection of a store (optionally of one symbol; ``checksums``: hash its files on open).

    Returns:
        ``{"path", "summary", "features", "swings", "per_symbol", "warnings"}``.
    """
    store = open_store(path, checksums=checksums)
    if symbol is not None and symbol not in store.stats["per_symbol"]:
        more = len(store.symbols) - 20
        shown = ", ".join(store.symbols[:20]) + (f" and {more:,} more" if more > 0 else "")
        raise StoreError(f"{path}: no symbol {symbol!r}; the store holds {shown}.")
    symbols = [symbol] if symbol else store.symbols
    ts = store.timestamps()
    spans: dict[str, list[tuple[int, int]]] = {}  # one pass over the segments, not one per symbol
    for seg in store.segments:
        spans.setdefault(seg.name, []).append((seg.first, seg.stop))
    per_symbol = []
    for name in symbols:
        st = store.stats["per_symbol"][name]
        parts = [ts[a:b] for a, b in spans[name]]
        gaps = time_gaps(np.concatenate(parts))
        per_symbol.append({"symbol": name, "bars": st["bars"], "valid_bars": st["valid_bars"],
                           "valid_share": st["valid_bars"] / max(st["bars"], 1), "swings": st["swings"],
                           "features": st["features"], "gaps": gaps,
                           "first": int(parts[0][0]), "last": int(parts[-1][-1])})
    scope = store.stats if symbol is None else store.stats["per_symbol"][symbol]
    result = {
        "path": str(store.path),
        "summary": _summary(store),
        "features": scope["features"],
        "swings": scope["swings"],
        "per_symbol": per_symbol,
    }
    result["warnings"] = _warnings(store, result)
    return result


def _summary(store: Store) -> dict:
    return {"bars": store.n_bars, "symbols": len(store.symbols), "shards": len(store.shards),
            "bytes": store.bytes_on_disk, "engine": store.engine, "config": store.config.to_dict(),
            "created": store.created,
            "sources": [s.get("path") or f"synthetic seed {s.get('seed')}" for s in store.sources],
            "valid_bars": store.stats["valid_bars"], "splits": store.splits}


def _warnings(store: Store, result: dict) -> list[str]:
    cfg = store.config
    out = []
    swings = result["swings"]
    for name in FEATURE_NAMES:
        st = result["features"][name]
        if st["std"] is None:
            continue
        lo, hi = FEATURE_RANGES[name]
        if st["std"] < NEARLY_CONSTANT_STD * (hi - lo):
            hint = ""
            if name.startswith("bars_since") and swings["bars_per_swing"] is not None:
                hint = (f"; swings confirm every {swings['bars_per_swing']:.1f} bars, so bars-since stays near 0"
                        + (": try --no-hybrid or a larger --zigzag-k" if cfg.hybrid else ": try a larger --zigzag-k"))
            out.append(f"{name} is nearly constant (std {st['std']:.4f} within its range [{lo}, {hi}], "
                       f"values {st['min']:.3f}..{st['max']:.3f}){hint}")
        if st["nonzero"] is not None and st["nonzero"] < 0.01:
            out.append(f"{name} is zero on {1 - st['nonzero']:.1%} of valid bars; a model learns nothing from it")
    if swings["bars_per_swing"] is not None and swings["bars_per_swing"] < FAST_SWINGS_BARS:
        out.append(f"a swing is confirmed every {swings['bars_per_swing']:.2f} bars ({swings['per_1000_bars']:.0f} per "
                   "1,000 bars): the zigzag follows noise"
                   + ("; try --no-hybrid (primary rule only) or a larger --zigzag-k" if cfg.hybrid
                      else "; try a larger --zigzag-k"))
    for s in result["per_symbol"]:
        if s["valid_share"] < LOW_VALID_SHARE:
            out.append(f"{s['symbol']}: only {s['valid_share']:.1%} of bars are valid (warm-up {cfg.warmup_bars} bars "
                       "and the first confirmed swings); short series lose most of their bars")
        g = s["gaps"]
        if g["missing_bar_gaps"] and g["missing_bars"] > 0.001 * s["bars"]:
            out.append(f"{s['symbol']}: {g['missing_bar_gaps']:,} gaps inside sessions ({g['missing_bars']:,} missing "
                       "bars); features treat consecutive stored bars as adjacent, so fill or drop those stretches")
    if store.engine.get("fixups"):
        out.append(f"the engine re-ran {store.engine['fixups']} chunk(s) whose speculative start was "
                   "wrong: results are exact, but a longer warm-up would avoid the extra work")
    return out


def _shown(text) -> str:
    """Data text for a rich console: control characters escaped, markup brackets kept literal."""
    from rich.markup import escape

    return escape(printable(text))


def render(result: dict, console) -> None:
    """Print an inspection with rich tables (at most :data:`MAX_SYMBOL_ROWS` symbols and
    :data:`MAX_WARNING_LINES` warnings; a line says how many more there are)."""
    from rich.table import Table

    from .splits import SPLIT_NAMES

    s = result["summary"]
    eng = s["engine"]
    console.print(f"[bold]{_shown(result['path'])}[/]: {s['bars']:,} bars, {s['symbols']:,} symbol(s), "
                  f"{s['shards']} shard(s), {s['bytes'] / 1e6:.1f} MB; {s['valid_bars']:,} valid bars; engine "
                  f"{_shown(eng['name'])} ({eng['fixups']} fix-ups); created {_shown(s['created'])}", highlight=False)
    sources = s["sources"]
    console.print("source: " + "; ".join(_shown(x) for x in sources[:10])
                  + (f"; and {len(sources) - 10:,} more" if len(sources) > 10 else ""), highlight=False)
    console.print("config: " + ", ".join(f"{k}={v}" for k, v in s["config"].items()))
    sp = Table(title="splits")
    for col in ("split", "bars", "windows"):
        sp.add_column(col, justify="right" if col != "split" else "left")
    for name in SPLIT_NAMES:
        c = s["splits"]["counts"][name]
        sp.add_row(name, f"{c['bars']:,}", f"{c['windows']:,}")
    console.print(sp)
    ft = Table(title="features over valid bars")
    for col in ("feature", "min", "max", "mean", "std", "non-zero"):
        ft.add_column(col, justify="right" if col != "feature" else "left")
    for name in FEATURE_NAMES:
        f = result["features"][name]
        if f["mean"] is None:
            ft.add_row(name, "-", "-", "-", "-", "-")
            continue
        ft.add_row(name, f"{f['min']:.3f}", f"{f['max']:.3f}", f"{f['mean']:.4f}", f"{f['std']:.4f}",
                   f"{f['nonzero']:.1%}")
    console.print(ft)
    rows = result["per_symbol"]
    st = Table(title="per symbol" + (f" (the first {MAX_SYMBOL_ROWS} of {len(rows):,})" if len(rows) > MAX_SYMBOL_ROWS
                                     else ""))
    for col in ("symbol", "bars", "valid", "swing highs", "swing lows", "bars/swing", "sessions", "missing bars"):
        st.add_column(col, justify="right" if col != "symbol" else "left")
    for p in rows[:MAX_SYMBOL_ROWS]:
        w = p["swings"]
        st.add_row(_shown(p["symbol"]), f"{p['bars']:,}", f"{p['valid_share']:.1%}", f"{w['highs']:,}",
                   f"{w['lows']:,}", f"{w['bars_per_swing']:.2f}" if w["bars_per_swing"] else "-",
                   f"{p['gaps']['session_breaks'] + 1:,}", f"{p['gaps']['missing_bars']:,}")
    console.print(st)
    if len(rows) > MAX_SYMBOL_ROWS:
        console.print(f"{len(rows) - MAX_SYMBOL_ROWS:,} more symbol(s) not shown; `gpu-features inspect STORE --symbol "
                      "NAME` shows any one.")
    warnings = result["warnings"]
    if warnings:
        console.print("[bold yellow]warnings[/]")
        for w in warnings[:MAX_WARNING_LINES]:
            console.print(f"  [yellow]![/] {_shown(w)}", highlight=False)
        if len(warnings) > MAX_WARNING_LINES:
            console.print(f"  [yellow]![/] and {len(warnings) - MAX_WARNING_LINES:,} more warning(s) of the same "
                          "kinds; `--symbol NAME` shows one symbol's.", highlight=False)
    else:
        console.print("[green]no warnings[/]")
