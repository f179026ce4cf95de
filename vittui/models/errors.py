"""The error every model module raises, kept apart so each can raise it without importing the others."""


class ModelError(RuntimeError):
    """A model problem phrased so the person can fix it: which setting, what to change."""


__all__ = ["ModelError"]
