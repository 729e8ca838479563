"""User-facing errors. The CLI prints their message as one line and exits with status 2.

Raise these (never a bare exception from deep inside numpy or torch) when the
user's input is wrong: the message says what is wrong and how to fix it.
"""


class DittoError(Exception):
    """Base class of every error caused by the user's input or files."""


class EnvError(DittoError):
    """An unknown environment id, an env that cannot render, or a bad env option."""


class SpecError(DittoError):
    """Two things (env, dataset, model, expert) disagree on frames or actions."""


class DatasetError(DittoError):
    """A dataset directory that is missing, empty, corrupt or inconsistent."""


class ExpertError(DittoError):
    """An expert spec that cannot be resolved or does not fit the env."""


class ConfigError(DittoError, ValueError):
    """An unknown preset, option value or config key."""
