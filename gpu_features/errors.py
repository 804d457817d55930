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
