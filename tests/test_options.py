"""options.py: the ``type=`` hooks and the one-line parser every option of both command lines goes through.

The grid over every option of every command is tests/cli/test_option_grid.py; these are the hooks themselves.
"""
import argparse

import pytest

from gpu_features.options import INT64_MAX, OneLineParser, character, count, number


@pytest.mark.parametrize("text, value", [("7", 7), ("1e6", 1_000_000), ("1_000", 1000), (" 12 ", 12),
                                         ("9223372036854775807", INT64_MAX)])
def test_count_reads_whole_numbers_however_written(text, value):
    assert count()(text) == value


@pytest.mark.parametrize("text, words", [("1.5", "is not a whole number"), ("nan", "is not a whole number"),
                                         ("inf", "is not a whole number"), ("ten", "is not a whole number"),
                                         ("0", "out of range; allowed: x >= 1"), ("65", "allowed: 1 <= x <= 64")])
def test_count_refuses_what_is_not_a_whole_number_in_range(text, words):
    hook = count(1, 64) if text == "65" else count(1)
    with pytest.raises(argparse.ArgumentTypeError, match=words):
        hook(text)


def test_number_refuses_non_finite_values_and_honours_open_ends():
    assert number()("1e-320") == 1e-320 and number(0.0, 1.0)("1") == 1.0
    for text in ("nan", "inf", "-inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            number()(text)
    with pytest.raises(argparse.ArgumentTypeError, match=r"allowed: 0 < x <= 1"):
        number(0.0, 1.0, lo_open=True)("0")


def test_character_is_exactly_one_character():
    assert character(";") == ";" and character("\t") == "\t" and character(" ") == " "
    with pytest.raises(argparse.ArgumentTypeError, match="is not one character"):
        character("::")
    for empty in ("", "  "):
        with pytest.raises(argparse.ArgumentTypeError, match="an empty value is not allowed"):
            character(empty)


def test_the_parser_refuses_empty_values_in_one_line(capsys):
    p = OneLineParser(prog="tool")
    p.add_argument("--name")
    p.add_argument("--files", nargs="+")
    p.add_argument("--delimiter", type=character)
    assert p.parse_args(["--name", "x"]).name == "x"
    assert p.parse_args(["--delimiter", "\t"]).delimiter == "\t"  # one tab is a value, not an empty one
    for argv in (["--name", ""], ["--files", "a", " "]):
        with pytest.raises(SystemExit) as e:
            p.parse_args(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "an empty value is not allowed" in err
    with pytest.raises(SystemExit):
        p.parse_args(["--name\x1b[2J", "x"])
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.startswith("error: tool: ") and "see `tool --help`" in err
