"""Errors that reach users.

Every failure caused by user input (a path, a file, a flag, a config value) is raised as a
`SpotError` subclass with a message that names the thing at fault. The CLI prints these
without a traceback; anything else is a bug and keeps its traceback.
"""


class SpotError(Exception):
    """Base class for errors caused by user input or the environment."""


class ConfigError(SpotError, ValueError):
    """A config value, preset name or `--set` override is unknown or has the wrong type."""


class CheckpointError(SpotError):
    """A checkpoint path is missing, not a checkpoint, corrupt, or disagrees with its config."""


class PromptError(SpotError, ValueError):
    """A prompt file or array is unreadable, non-finite or the wrong shape for the model."""


class DataError(SpotError, ValueError):
    """A task, mixture or data file is unknown, missing or malformed."""


class LibraryError(SpotError):
    """A prompt library is missing, corrupt, or of an unknown format version."""


class NonFiniteError(SpotError, FloatingPointError):
    """Training produced a NaN or Inf; the last good checkpoint is left intact."""
