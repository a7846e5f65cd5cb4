"""``verify``: re-hash every segment against its recorded checksum and check each index against them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..media import hash_file
from .errors import CorruptionError, StoreError
from .layout import INDEX, MANIFEST, read_json
from .segment import Segment, feature_hash
from .snapshot import OK, content_digest, manifest_digest, read_index_rows
from .view import StoreView


@dataclass
class VerifyReport:
    snapshots: list[str]
    problems: list[str] = field(default_factory=list)
    segments_checked: int = 0
    rows_checked: int = 0
    bytes_hashed: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class _SegmentCheck:
    def __init__(self, store: StoreView, report: VerifyReport):
        self.store, self.report = store, report
        self.cache: dict[str, tuple[Segment | None, list[str], list[str]]] = {}

    def get(self, name: str, record: dict) -> tuple[Segment | None, list[str], list[str]]:
        if name in self.cache:
            return self.cache[name]
        path = self.store.layout.segment(name)
        problems = self.report.problems
        seg = None
        hashes: list[str] = []
        fhashes: list[str] = []
        if not path.exists():
            problems.append(f"segment {name}: file missing ({path})")
        else:
            actual, n = hash_file(path), path.stat().st_size
            self.report.bytes_hashed += n
            self.report.segments_checked += 1
            if actual != name or actual != record.get("sha256", name):
                problems.append(f"segment {name}: checksum mismatch, the file is corrupt ({path}; recorded sha256 "
                                f"{name}, actual {actual})")
            elif n != record.get("bytes"):
                problems.append(f"segment {name}: size {n} != recorded {record.get('bytes')} ({path})")
            else:
                try:
                    seg = Segment(path, self.store.spec)
                    if seg.spec_digest != self.store.spec.digest():
                        problems.append(f"segment {name}: written for another spec ({path})")
                        seg = None
                    elif seg.num_rows != record.get("rows"):
                        problems.append(f"segment {name}: {seg.num_rows} rows != recorded {record.get('rows')}")
                        seg = None
                    else:
                        hashes, fhashes = seg.hashes(), seg.feat_hashes()
                except CorruptionError as e:
                    problems.append(str(e))
        self.cache[name] = (seg, hashes, fhashes)
        return self.cache[name]


def verify_store(store: StoreView, snapshot: str | None = None, *, all_snapshots: bool | None = None,
                 deep: bool = True) -> VerifyReport:
    """Check snapshot ``snapshot`` (default: every snapshot). Problems are collected, not raised."""
    if snapshot is not None:
        ids = [store.resolve(snapshot)]
    else:
        ids = store.snapshot_ids()
    report = VerifyReport(snapshots=ids)
    try:
        store._read_store_file(store.root)
    except StoreError as e:
        report.problems.append(f"STORE.json: {e}")
    segs = _SegmentCheck(store, report)
    for sid in ids:
        _verify_snapshot(store, sid, segs, report, deep)
    return report


def _verify_snapshot(store: StoreView, sid: str, segs: _SegmentCheck, report: VerifyReport, deep: bool) -> None:
    """One snapshot: its manifest and index, then every row against the segment it points to."""
    problems = report.problems
    try:
        info = store._load_snapshot(sid)
    except StoreError as e:
        problems.append(f"snapshot {sid}: {e}")
        return
    rows = _checked_index(info, sid, store.spec, report)
    if rows is None:
        return
    referenced = {r.segment for r in rows if r.status == OK}
    if None in referenced:
        problems.append(f"snapshot {sid}: an ok row has no segment")
        referenced.discard(None)
    unknown = referenced - set(info.segments)
    if unknown:
        problems.append(f"snapshot {sid}: index references segments not in the manifest: {sorted(unknown)[:3]}")
    for r in rows:
        report.rows_checked += 1
        _verify_row(r, sid, info, segs, store.spec, report, deep)
    for name, rec in info.segments.items():  # segments listed but unused still must be intact
        segs.get(name, rec)


def _checked_index(info: Any, sid: str, spec: Any, report: VerifyReport) -> list | None:
    """The snapshot's index rows after checking the manifest, the index file's checksum and its agreement with
    the manifest; None when the rows cannot be trusted enough to check further."""
    problems = report.problems
    try:
        raw = read_json(info.path / MANIFEST)
        if raw.get("manifest_digest") != manifest_digest(raw):
            problems.append(f"snapshot {sid}: manifest.json does not match its manifest_digest (corrupt)")
    except (OSError, ValueError) as e:
        problems.append(f"snapshot {sid}: manifest.json unreadable: {e}")
    if info.spec_digest != spec.digest():
        problems.append(f"snapshot {sid}: spec digest differs from the store's")
    idx_path = info.path / INDEX
    try:
        actual, n = hash_file(idx_path), idx_path.stat().st_size
    except FileNotFoundError:
        problems.append(f"snapshot {sid}: index.arrow missing")
        return None
    report.bytes_hashed += n
    if actual != info.index.get("sha256") or n != info.index.get("bytes"):
        problems.append(f"snapshot {sid}: index.arrow checksum mismatch (recorded {info.index.get('sha256')}, "
                        f"actual {actual}); the index is corrupt")
        return None
    try:
        rows = read_index_rows(idx_path)
    except StoreError as e:
        problems.append(f"snapshot {sid}: {e}")
        return None
    if len(rows) != info.index.get("rows"):
        problems.append(f"snapshot {sid}: index has {len(rows)} rows, manifest says {info.index.get('rows')}")
    ids_sorted = [r.media_id for r in rows]
    if ids_sorted != sorted(set(ids_sorted)):
        problems.append(f"snapshot {sid}: index media ids are not sorted and unique")
        return None
    if content_digest(spec, rows) != info.digest:
        problems.append(f"snapshot {sid}: content digest of the index does not match the manifest")
    n_ok = sum(r.status == OK for r in rows)
    if n_ok != info.counts.get("ok") or len(rows) - n_ok != info.counts.get("error"):
        problems.append(f"snapshot {sid}: ok/error counts differ from the manifest")
    return rows


def _verify_row(r: Any, sid: str, info: Any, segs: _SegmentCheck, spec: Any, report: VerifyReport,
                deep: bool) -> None:
    """One index row: a quarantined row has a reason and no segment; an ok row's segment holds its sample."""
    problems = report.problems
    if r.status != OK:
        if r.segment is not None or not r.reason:
            problems.append(f"snapshot {sid}: quarantined {r.media_id} has a segment or no reason")
        return
    if r.segment not in info.segments:
        return
    seg, hashes, fhashes = segs.get(r.segment, info.segments[r.segment])
    if seg is None:
        return
    where = f"snapshot {sid}: {r.media_id} -> segment {r.segment} row {r.row}"
    if not 0 <= r.row < seg.num_rows:
        problems.append(f"{where}: row out of range")
        return
    if hashes[r.row] != r.sha256 or fhashes[r.row] != r.feat_sha256:
        problems.append(f"{where}: the segment holds another sample")
        return
    arr = seg.row(r.row)
    if spec.ragged and arr.shape[0] != r.frames:
        problems.append(f"{where}: {arr.shape[0]} frames != {r.frames} in the index")
    if deep and feature_hash(arr) != r.feat_sha256:
        problems.append(f"{where}: feature bytes do not match their sha256")
