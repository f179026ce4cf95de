"""The error every data module raises, kept apart so each can raise it without importing the others."""


class DataError(RuntimeError):
    """A data problem phrased so that the user can fix it (which path, which classes, which file)."""


__all__ = ["DataError"]
