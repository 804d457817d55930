"""errors.py: the error types, and printable, the one escaping of text from data or a library."""
import pytest

from gpu_features.errors import printable

ESC = "\x1b[2J"  # clears the screen when printed raw


@pytest.mark.parametrize("text, shown", [
    ("plain words, é and 日本", "plain words, é and 日本"),
    (f"ES{ESC}", "ES\\x1b[2J"),
    ("a\nb\tc\x00d\x7fe\x9bf", "a\\x0ab\\x09c\\x00d\\x7fe\\x9bf"),
    ("left\u202eright", "left\\u202eright"),  # a bidirectional override reorders what the terminal shows
])
def test_printable_escapes_control_characters_only(text, shown):
    assert printable(text) == shown
