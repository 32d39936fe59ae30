"""Exception types. Every message says what was wrong and how to fix it.

The CLI prints ``MLKDError`` messages as one line (no traceback unless ``--debug``). A value
quoted in a message goes through ``quote`` (bounded, whatever its size).
"""

import reprlib

#: The longest quoted value (a config value, a cause's message) an error message carries.
QUOTE_LIMIT = 200


def shorten(text: object, limit: int = QUOTE_LIMIT) -> str:
    """``text`` on one line, cut to ``limit`` characters (marked "...") so that a quoted value
    (a YAML alias bomb, a library's paragraph of advice) never makes an error huge."""
    one_line = " ".join(str(text)[: 4 * limit].split())
    return one_line if len(one_line) <= limit else one_line[: limit - 3] + "..."


def _bounded_repr() -> reprlib.Repr:
    bounded = reprlib.Repr()
    bounded.maxlevel, bounded.maxlist, bounded.maxtuple, bounded.maxdict = 3, 8, 8, 8
    bounded.maxstring = bounded.maxother = bounded.maxlong = QUOTE_LIMIT
    return bounded


_REPR = _bounded_repr()


def quote(value: object) -> str:
    """``repr(value)`` bounded: nested and long values are elided (``[[1, 2, ...], ...]``), so a
    YAML alias bomb (a few lines that expand to gigabytes) is quoted in a few characters."""
    return shorten(_REPR.repr(value))


class MLKDError(Exception):
    """Base class of every error mlkd raises on purpose.

    Raised in a DataLoader worker, torch re-raises it in the main process as
    ``type(err)("Caught <type> in DataLoader worker process N.\nOriginal Traceback ...")``;
    the constructor recognises that form and keeps only the original message (plus where it
    came from), so the CLI still prints one line and no worker traceback.
    """

    def __init__(self, *args: object):
        if (
            len(args) == 1
            and isinstance(args[0], str)
            and args[0].startswith("Caught ")
            and "\nOriginal Traceback" in args[0]
        ):
            marker = f"{type(self).__module__}.{type(self).__name__}: "
            where = args[0].split(".\n", 1)[0].replace("Caught ", "", 1)
            original = args[0].rpartition(marker)[2].strip()
            if original:
                args = (f"{original} ({where})",)
        super().__init__(*args)


class ConfigError(MLKDError, ValueError):
    """A config file, key or value is invalid."""


class OptionError(ConfigError):
    """A bad option value passed from Python (``build_objective(options=...)``), worded for a
    Python caller; ``path`` (e.g. ``("mld", "temperature")``) lets a config reader name its key
    (``distill.options.mld.temperature``) when it re-raises it."""

    def __init__(self, message: str, path: tuple = ()):
        super().__init__(message)
        self.path = tuple(path)


class DataError(MLKDError, ValueError):
    """A dataset file is missing, malformed or inconsistent."""


class CacheCorruptError(DataError):
    """A derived cache's files are missing, truncated, damaged or carry no digest to check them
    by: rebuilt where the caller can (the teacher at hand), else raised naming the file."""


class CheckpointError(MLKDError, ValueError):
    """A checkpoint is missing, unreadable, refused, corrupt or does not match the run."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint's bytes are damaged (truncated, garbage, digest mismatch): only these are
    set aside as ``*.corrupt`` by ``--resume``; an intact file that cannot be opened is not."""


class RunFolderError(MLKDError, OSError):
    """A run-folder file (metrics.jsonl, config.yaml, a folder) could not be written."""

    @classmethod
    def cannot_write(cls, path: object, err: OSError) -> "RunFolderError":
        return cls(
            f"cannot write {path} ({err.strerror or err}; disk full or over quota?); the checkpoints "
            "already written are intact: free space, then continue with --resume"
        )


class NonFiniteLossError(MLKDError, FloatingPointError):
    """A loss or its gradients became NaN or infinite and the policy says stop, or (under
    ``train.nonfinite: skip``) the evaluated scores of a diverged model are NaN."""


class RunBusyError(MLKDError, RuntimeError):
    """Another process is training the same run folder."""


#: Exit status of a pre-empted command (EX_TEMPFAIL: try again, i.e. with --resume).
EXIT_PREEMPTED = 75


class Preempted(MLKDError):
    """A run stopped on SIGTERM / SIGUSR1 after saving a checkpoint of where it was."""
