"""Exceptions for AutoDL data: each names the file (and record or field) at fault."""

from __future__ import annotations

__all__ = [
    "AutoDLDataError",
    "MetadataError",
    "RecordError",
    "SampleCountError",
    "SolutionError",
    "SourceError",
    "DatasetExistsError",
]


class AutoDLDataError(ValueError):
    """Base class: something about an AutoDL dataset on disk is wrong."""


class MetadataError(AutoDLDataError):
    """`metadata.textproto` is missing, malformed, or holds an invalid value."""


class RecordError(AutoDLDataError):
    """A TFRecord file is truncated or corrupt, or a record does not parse or decode.

    Attributes:
        path: the TFRecord file.
        index: 0-based index of the bad record in that file (None if unknown).
    """

    def __init__(self, message: str, path: str | None = None, index: int | None = None):
        super().__init__(message)
        self.path = path
        self.index = index


class SampleCountError(AutoDLDataError):
    """The number of records differs from `sample_count` in the metadata."""


class SolutionError(AutoDLDataError):
    """A `.solution` file has the wrong number of rows or columns, or non-0/1 values."""


class SourceError(AutoDLDataError):
    """A converter's input (folder, array file, image) is unreadable or inconsistent."""


class DatasetExistsError(AutoDLDataError, FileExistsError):
    """The output dataset folder exists and overwriting was not asked for."""
