"""Exception types. Every message says what was wrong and how to fix it.

The CLI prints ``MLKDError`` messages as one line (no traceback unless ``--debug``).
"""


class MLKDError(Exception):
    """Base class of every error mlkd raises on purpose."""


class ConfigError(MLKDError, ValueError):
    """A config file, key or value is invalid."""


class DataError(MLKDError, ValueError):
    """A dataset file is missing, malformed or inconsistent."""


class CheckpointError(MLKDError, ValueError):
    """A checkpoint is missing, corrupt or does not match the run."""


class NonFiniteLossError(MLKDError, FloatingPointError):
    """A loss became NaN or infinite and the policy says stop."""
