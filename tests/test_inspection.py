"""inspect and verify in linear time, with capped, escaped output.

No wall clock: the work is counted. Lines of gpu_features executed (``sys.settrace``) must grow in
proportion to the symbols, not with their square; verify's recomputed bars stay bounded by its sample
however many segments a store has; the source-to-store layout compares each name a bounded number of
times (names that count their comparisons, so a search per segment, which runs in C and executes no
Python line, is caught too).
"""
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import gpu_features
from gpu_features import synthetic
from gpu_features.inspection import MAX_SYMBOL_ROWS, inspect_store, render
from gpu_features.sources import store_bars
from gpu_features.verify import verify_store

PACKAGE = str(Path(gpu_features.__file__).parent)
SMALL, LARGE = 40, 640  # symbols; linear work grows 16x between them, quadratic work 256x
LINEAR = 24  # the most lines(LARGE) / lines(SMALL) may be: 16x and a margin (the old inspect gave 40x)


def lines_executed(fn) -> int:
    """Lines of the gpu_features package executed while ``fn()`` runs."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if not frame.f_code.co_filename.startswith(PACKAGE):
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


@pytest.fixture(scope="module")
def stores(make_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("linear")
    return {s: make_store(synthetic.generate(150, s, 3), root / f"s{s}").path for s in (SMALL, LARGE)}


def test_inspect_is_linear_in_the_symbols(stores):
    def inspect(path):
        return lambda: render(inspect_store(path), Console(file=io.StringIO(), width=200))

    small, large = lines_executed(inspect(stores[SMALL])), lines_executed(inspect(stores[LARGE]))
    assert large < LINEAR * small, f"inspect ran {small:,} lines for {SMALL} symbols and {large:,} for {LARGE}"


def test_verify_is_linear_and_recomputes_a_bounded_sample(stores):
    reports = {}

    def verify(s):
        return lambda: reports.__setitem__(s, verify_store(stores[s], sample_bars=1000))

    small, large = lines_executed(verify(SMALL)), lines_executed(verify(LARGE))
    assert reports[SMALL].ok and reports[LARGE].ok, reports[LARGE].checks
    assert large < LINEAR * small, f"verify ran {small:,} lines for {SMALL} symbols and {large:,} for {LARGE}"
    # every segment's edges would be all 96,000 bars: a random choice of segments up to the sample is taken,
    # plus the segments holding the shard's first and last bar and the one that crosses the sample size
    assert 1000 <= reports[LARGE].bars_recomputed <= 1000 + 3 * 150, reports[LARGE].bars_recomputed
    values = next(c for c in reports[LARGE].checks if c.name == "values")
    assert f"of {LARGE} segments, chosen at random" in values.detail


class Name(str):
    """A symbol name that counts how often it is compared."""

    compared = 0

    def __eq__(self, other):
        Name.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_source_layout_compares_names_a_bounded_number_of_times(stores):
    import gpu_features as gf

    counts = {}
    for s in (SMALL, LARGE):
        st = gf.open_store(stores[s])
        bars = synthetic.generate(150, s, 3)
        bars = type(bars)(**{**bars.__dict__, "segment_names": tuple(Name(x) for x in bars.segment_names)})
        Name.compared = 0
        laid = store_bars(st, [bars])
        assert np.array_equal(laid.close, bars.close)
        counts[s] = Name.compared
    assert counts[LARGE] <= 4 * LARGE + 4, counts  # a few comparisons per name, never one per pair


def test_inspect_caps_what_it_prints_and_escapes_symbol_names(make_store, stores, tmp_path):
    out = io.StringIO()
    render(inspect_store(stores[LARGE]), Console(file=out, width=200))
    text = out.getvalue()
    assert f"the first {MAX_SYMBOL_ROWS} of {LARGE}" in text and f"{LARGE - MAX_SYMBOL_ROWS:,} more symbol(s)" in text
    bars = synthetic.generate(300, 2, 1)
    bars = type(bars)(**{**bars.__dict__, "segment_names": ("ES\x1b[2J", "[bold]NQ")})
    path = make_store(bars, tmp_path / "odd").path
    out = io.StringIO()
    render(inspect_store(path), Console(file=out, width=200, force_terminal=True))
    text = out.getvalue()
    assert "\x1b[2J" not in text and "ES\\x1b[2J" in text and "[bold]NQ" in text
