"""What the maintenance code (``gc``, ``info``, ``verify``) reads of a store.

``FeatureStore`` provides it and calls the maintenance functions; they are typed against this protocol
instead of the store class, so neither module imports the other (no import cycle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from .layout import Layout
from .snapshot import SnapshotInfo
from .spec import StoreSpec


class StoreView(Protocol):
    root: Path
    spec: StoreSpec
    layout: Layout

    def snapshot_ids(self) -> list[str]: ...

    def snapshots(self) -> list[SnapshotInfo]: ...

    def resolve(self, ref: str | None) -> str: ...

    def runs(self) -> list[dict[str, Any]]: ...

    def _load_snapshot(self, snap_id: str) -> SnapshotInfo: ...

    @staticmethod
    def _read_store_file(root: Path) -> StoreSpec: ...
