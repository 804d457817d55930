"""The one exception family every user-facing refusal uses.

Each message is one sentence: what is wrong, where, which rule, how to fix it.
The CLI prints ``str(err)`` and exits non-zero; nothing else is needed.
"""


class GpuFeaturesError(ValueError):
    """Base of every refusal the package raises on bad input or a bad store."""


class ConfigError(GpuFeaturesError):
    """A FeatureConfig field is out of range, unknown or of the wrong type."""


class BarsError(GpuFeaturesError):
    """Input bars break an ingest rule (README "Inputs"; gpu_features.ingest.rules)."""


class StoreError(GpuFeaturesError):
    """A feature store is missing, malformed, tampered with or not writable."""


class EngineError(GpuFeaturesError):
    """An engine cannot run here (no compiler, no GPU) or was misused."""


class WindowError(GpuFeaturesError):
    """A window index or loader was asked for something it cannot do."""


class StreamError(GpuFeaturesError):
    """A live feature stream was misused, or its saved state is unreadable or does not belong here."""


class LockError(GpuFeaturesError):
    """Another process is writing the same store or export and did not finish in time."""


def printable(text) -> str:
    """``text`` with every control character escaped, for the terminal.

    Text that comes from data (symbol names, file bytes quoted in a library's message, values of a
    column) may hold terminal escape sequences (``ESC[2J`` clears the screen); printed through this
    function they show as ``\\x1b[2J``. Newlines and tabs are escaped too: a message is one line.
    C0 and C1 controls, DEL, and the Unicode format characters that reorder text on screen
    (bidirectional overrides) are escaped; everything else is kept as is.
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else _escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
