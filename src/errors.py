"""Errors that are the user's to fix: the CLI prints their message without a traceback.

Everything else (a bug) keeps its traceback. Each message names the key or file, the
value, and what was expected or how to get the missing thing.
"""


class UserError(Exception):
    """A problem with the user's input: config, data files, checkpoints, arguments."""


class ConfigError(UserError):
    """A config file or override that does not validate."""


class DataNotFoundError(UserError):
    """Dataset files that are missing and could not be downloaded."""


class CheckpointError(UserError):
    """A pretrained model that is missing or does not fit the run."""


class DivergedError(UserError):
    """A run whose loss or parameters stopped being finite numbers: never a result."""
