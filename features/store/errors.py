"""The feature store's exceptions (all subclasses of ``StoreError``)."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every feature-store error."""


class SpecMismatchError(StoreError):
    """The store on disk was created for another extractor spec; the message names the differing fields."""


class SnapshotNotFoundError(StoreError, KeyError):
    """No such snapshot (never committed, or garbage-collected)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class IncompleteRunError(StoreError):
    """``commit`` found media whose hash is neither in the run's shards nor reusable from the parent snapshot."""

    def __init__(self, message: str, missing: list | None = None):
        super().__init__(message)
        self.missing = missing or []


class StaleRunError(StoreError):
    """The run's parent snapshot is no longer the latest one (another commit happened in between)."""


class StoreBusyError(StoreError):
    """Another process is writing to the store (it holds the writer lock)."""


class CorruptionError(StoreError):
    """A segment, index or manifest does not match its recorded checksum or is inconsistent."""


class QuarantinedError(StoreError, LookupError):
    """The sample is in the snapshot but its extraction failed (status ``error``); ``reason`` says why."""

    def __init__(self, media_id: str, reason: str):
        super().__init__(f"media {media_id!r} is quarantined (extraction failed): {reason}")
        self.media_id = media_id
        self.reason = reason
