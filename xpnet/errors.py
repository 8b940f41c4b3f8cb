"""Errors a user can cause. The CLI prints them as one line, without a traceback."""


class XpnetError(Exception):
    """Base of every error whose message tells the user what went wrong and what to do."""


class ConfigError(XpnetError, ValueError):
    """An option or argument has an unknown name or an impossible value."""


class BackendError(XpnetError, RuntimeError):
    """The requested backend or device cannot be used, or arrays from two of them were mixed."""


class ShapeError(XpnetError, ValueError):
    """An input's shape or dtype does not fit the layer it is given to."""


class LabelError(XpnetError, ValueError):
    """Class labels are not integers, or lie outside 0..C−1 for a network of C classes."""


class DataError(XpnetError, RuntimeError):
    """A dataset file is missing, truncated, corrupt, or cannot be downloaded."""


class CheckpointError(XpnetError, RuntimeError):
    """A checkpoint file is corrupt, truncated, or belongs to another architecture."""


class TrainingDiverged(XpnetError, RuntimeError):
    """The loss became NaN or infinite."""


def choose(kind: str, name, choices):
    """Return `name` if it is one of `choices`, else raise a ConfigError listing them."""
    if name in choices:
        return name
    valid = ", ".join(str(c) for c in choices)
    raise ConfigError(f"unknown {kind} {name!r}; choose one of: {valid}")
