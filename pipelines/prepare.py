"""Prepare one dataset: raw store → unified Arrow tables per split, a media index, and a coverage report.

Output (``<root>/tables/<dataset>/``): ``<split>.arrow`` per split (schemas in ``pipelines.tables``),
``media.arrow`` (media_id → rel_path under the raw store, sha256, size, kind), ``prepare_report.json``
(counts per split, media coverage) and, when media are missing, ``missing_media.txt`` with one expected
file per line, so a user knows exactly what to supply (``vlpet download`` says where to get it).
Every table has a ``media_id`` column (``media_id0``/``media_id1`` for NLVR2): the key into the media index
and the feature store. Missing media are reported, never silently dropped: the rows stay in the tables
and the task builder excludes them explicitly.

The table set is written as a unit: ``COMPLETE.json`` (every file of the set with its size and sha256) is
removed first and written last, so a set without it is unfinished (``check_table_set`` says so), and the
temporary files a killed run left behind are removed when the next run starts. Paths inside the tables
(source files, the media root) are relative to the data root: the same data in another folder gives the same
table bytes, so content hashes downstream do not change with the location.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from features.media import hash_file
from pipelines.fetch import raw_dir
from pipelines.sources import get_source
from pipelines.tables import (
    build_media_index,
    check_karpathy_counts,
    load_subtitles,
    parse_coco_karpathy,
    parse_gqa_balanced,
    parse_nlvr2,
    parse_video_captions,
    parse_video_qa,
    parse_vqa_official,
    rebuild_karpathy_vqa,
    write_table,
    write_vl_t5_vqa_json,
)
from vlpet.atomic import write_text_atomic

MISSING_LIST_LIMIT = 20
COMPLETE = "COMPLETE.json"


class IncompleteTableSetError(FileNotFoundError):
    """A prepared table set lacks its completion marker or one of the files the marker lists."""


@dataclass
class PrepareReport:
    dataset: str
    tables: dict[str, int] = field(default_factory=dict)  # split -> rows
    media_present: int = 0
    media_referenced: int = 0
    media_missing: int = 0
    missing_examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    out_dir: str = ""

    @property
    def coverage(self) -> float:
        return 1.0 if not self.media_referenced else 1 - self.media_missing / self.media_referenced

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "coverage": round(self.coverage, 6)}


def find_file(base: Path, name: str, dataset: str) -> Path:
    """The one file called ``name`` under ``base`` (archives may or may not nest a top folder)."""
    hits = sorted(p for p in base.rglob(name) if p.is_file())
    if not hits:
        raise FileNotFoundError(f"{name} not found under {base}: run `vlpet download {dataset}` first")
    if len(hits) > 1:
        raise FileExistsError(f"{name} found more than once under {base}: {', '.join(map(str, hits))}")
    return hits[0]


def _with_media_id(table: pa.Table, column: str, mapping: dict[str, str] | None = None,
                   name: str = "media_id") -> pa.Table:
    """``column`` as text (through ``mapping`` where it has the value), appended as ``name``; Arrow compute,
    not Python strings per row (1.07M GQA rows)."""
    ids = pc.cast(table.column(column), pa.string())
    if mapping:
        keys = pa.array(list(mapping), pa.string())
        mapped = pc.take(pa.array(list(mapping.values()), pa.string()), pc.index_in(ids, value_set=keys))
        ids = pc.coalesce(mapped, ids)
    return table.append_column(name, ids)


def _referenced(tables: dict[str, pa.Table], columns: tuple[str, ...] = ("media_id",)) -> set[str]:
    """The distinct media ids the tables reference (distinct in Arrow first: far fewer than rows)."""
    out: set[str] = set()
    for table in tables.values():
        for column in columns:
            out.update(pc.unique(table.column(column)).to_pylist())
    return out


def _media(root: Path, directory: Path, pattern: str, kind: str) -> pa.Table:
    """Index the media under ``directory``; rel_path stays relative to the raw store root."""
    if not directory.is_dir():
        return pa.table({"media_id": pa.array([], pa.string()), "rel_path": pa.array([], pa.string()),
                         "sha256": pa.array([], pa.string()), "size": pa.array([], pa.int64()),
                         "kind": pa.array([], pa.string())})
    index = build_media_index(directory, pattern, kind)
    prefix = directory.relative_to(root).as_posix()
    rel = [f"{prefix}/{p}" for p in index.column("rel_path").to_pylist()]
    return index.set_column(index.schema.get_field_index("rel_path"), "rel_path", pa.array(rel, pa.string()))


# ------------------------------------------------------------------ per dataset


def _coco(raw: Path, store: Path) -> tuple[dict[str, pa.Table], pa.Table, set[str], list[str]]:
    captions, _ = parse_coco_karpathy(find_file(raw, "dataset_coco.json", "coco"))
    captions = _with_media_id(captions, "image_id")
    tables = {s: captions.filter(pc.equal(captions.column("karpathy_split"), s)) for s in ("train", "val", "test")}
    media = pa.concat_tables([_media(store, d, "*.jpg", "image") for d in
                              (raw / "train2014" / "train2014", raw / "val2014" / "val2014")])
    return tables, media, _referenced({"all": captions}), []


def _vqa(raw: Path, store: Path) -> tuple[dict[str, pa.Table], pa.Table, set[str], list[str]]:
    tables: dict[str, pa.Table] = {}
    for subset in ("train", "val"):
        q = find_file(raw, f"v2_OpenEnded_mscoco_{subset}2014_questions.json", "vqa")
        a = find_file(raw, f"v2_mscoco_{subset}2014_annotations.json", "vqa")
        tables[f"{subset}2014"], _ = parse_vqa_official(q, a, split=f"{subset}2014")
    notes = []
    coco_raw = raw_dir(store.parent, "coco")
    try:
        karpathy = find_file(coco_raw, "dataset_coco.json", "coco")
    except FileNotFoundError:
        notes.append("Karpathy splits not rebuilt: download coco first (dataset_coco.json)")
    else:
        splits, _ = rebuild_karpathy_vqa([tables["train2014"], tables["val2014"]], karpathy,
                                         find_file(raw, "trainval_ans2label.json", "vqa"))
        tables.update({f"karpathy_{k.removeprefix('karpathy_')}": v for k, v in splits.items()})
        check = check_karpathy_counts(splits)  # 605,102 / 26,729 / 26,280 (docs/data.md §2.2) on the full data
        notes += ([f"Karpathy VQA counts: {m}" for m in check.messages()]
                  or ["Karpathy VQA counts match the published sizes"])
        vlt5 = store.parent / "tables" / "vqa" / "vlt5"
        vlt5.mkdir(parents=True, exist_ok=True)
        for name, table in splits.items():  # the VL-T5 / VL-Adapter input files, rebuilt from the official ones
            write_vl_t5_vqa_json(table, vlt5 / f"{name}.json")
    tables = {k: _with_media_id(t, "image_id") for k, t in tables.items()}
    media = pa.concat_tables([_media(store, d, "*.jpg", "image") for d in
                              (coco_raw / "train2014" / "train2014", coco_raw / "val2014" / "val2014")])
    return tables, media, _referenced(tables), notes


def _gqa(raw: Path, store: Path) -> tuple[dict[str, pa.Table], pa.Table, set[str], list[str]]:
    tables = {}
    for split, stem in (("train", "train"), ("valid", "val"), ("testdev", "testdev")):
        t, _ = parse_gqa_balanced(find_file(raw, f"{stem}_balanced_questions.json", "gqa"), split=split)
        tables[split] = _with_media_id(t, "image_id")
    media = _media(store, raw / "images" / "images", "*.jpg", "image")
    return tables, media, _referenced(tables), []


def _nlvr2(raw: Path, store: Path) -> tuple[dict[str, pa.Table], pa.Table, set[str], list[str]]:
    tables = {}
    for split in ("train", "dev", "test1"):
        t, _ = parse_nlvr2(find_file(raw, f"{split}.json", "nlvr2"), split=split)
        t = _with_media_id(_with_media_id(t, "img0", name="media_id0"), "img1", name="media_id1")
        tables[split] = t
    media = _media(store, raw / "images", "**/*.png", "image")
    return tables, media, _referenced(tables, ("media_id0", "media_id1")), []


def _video(dataset: str, videos_of: str, subtitles: str, splits: tuple[str, ...], kind: str,
           mapping_file: str | None = None) -> Callable[[Path, Path], tuple]:
    def prepare(raw: Path, store: Path) -> tuple[dict[str, pa.Table], pa.Table, set[str], list[str]]:
        subs_raw = raw_dir(store.parent, videos_of)
        subs, _ = load_subtitles(find_file(subs_raw, subtitles, videos_of))
        mapping = None
        if mapping_file:
            mapping = {str(k): v for k, v in json.loads(find_file(raw, mapping_file, dataset).read_text()).items()}
        tables = {}
        for split in splits:
            path = find_file(raw, f"{dataset}_{split}.jsonl", dataset)
            if kind == "qa":
                t, _ = parse_video_qa(path, dataset=dataset, split=split, subtitles=subs)
            else:
                t, _ = parse_video_captions(path, dataset=dataset, split=split, subtitles=subs)
            tables[split] = _with_media_id(t, "vid_name", mapping)
        media = _media(store, subs_raw / "videos", "*.mp4", "video")
        return tables, media, _referenced(tables), []

    return prepare


PREPARERS: dict[str, Callable[[Path, Path], tuple]] = {
    "coco": _coco,
    "vqa": _vqa,
    "gqa": _gqa,
    "nlvr2": _nlvr2,
    "tvqa": _video("tvqa", "tvqa", "tv_subtitles.jsonl", ("train", "val", "test_public"), "qa"),
    "how2qa": _video("how2qa", "how2qa", "how2_subtitles.jsonl", ("train_release", "val_release",
                                                                   "test_public_release"), "qa",
                     mapping_file="how2_vid_mapping.json"),
    "tvc": _video("tvc", "tvqa", "tv_subtitles.jsonl", ("train_release", "val_release", "test_release"), "captions"),
    "yc2c": _video("yc2c", "yc2c", "yc2_subtitles.jsonl", ("train_release", "val_release", "test_release"),
                   "captions"),
}


def tables_dir(root: Path, dataset: str) -> Path:
    return Path(root) / "tables" / dataset


def remove_stale_temp(directory: Path) -> list[str]:
    """Delete the temporary files (``.<name>.<random>.tmp``) an interrupted atomic write left in ``directory``
    and its subfolders; prepare runs one at a time per dataset, so none of them is still being written."""
    removed = []
    for dirpath, _dirs, names in os.walk(directory):
        for n in names:
            if n.startswith(".") and n.endswith(".tmp"):
                (Path(dirpath) / n).unlink(missing_ok=True)
                removed.append(n)
    return removed


def _location_free(table: pa.Table, root: Path) -> pa.Table:
    """The table with the paths in its ``vlpet.*`` metadata (source files, the media root) made relative to the
    data root (POSIX), so its bytes do not depend on where the data lives or on the working directory."""
    meta = dict(table.schema.metadata or {})

    def rel(p: str) -> str:
        path = Path(p)
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return path.name

    if b"vlpet.sources" in meta:
        sources = json.loads(meta[b"vlpet.sources"])
        for s in sources:
            if "path" in s:
                s["path"] = rel(s["path"])
        meta[b"vlpet.sources"] = json.dumps(sources, sort_keys=True).encode()
    if b"vlpet.root" in meta:
        meta[b"vlpet.root"] = rel(meta[b"vlpet.root"].decode()).encode()
    return table.replace_schema_metadata(meta)


def check_table_set(out: Path) -> dict[str, object]:
    """The completion marker of a prepared table set, after checking every file it lists is there with its
    recorded size; ``IncompleteTableSetError`` (naming what is missing) otherwise."""
    marker = Path(out) / COMPLETE
    try:
        doc = json.loads(marker.read_text())
    except FileNotFoundError:
        raise IncompleteTableSetError(f"{out} is not a complete table set (no {COMPLETE}: prepare was interrupted "
                                      f"or is running); run `vlpet prepare` again") from None
    for name, rec in doc["files"].items():
        path = Path(out) / name
        if not path.is_file() or path.stat().st_size != rec["bytes"]:
            raise IncompleteTableSetError(f"{path} is missing or changed since prepare completed the table set; "
                                          f"run `vlpet prepare` again")
    return doc


def prepare_dataset(name: str, root: Path) -> PrepareReport:
    """Parse the raw store of ``name`` into tables + media index under ``<root>/tables/<name>/``."""
    source = get_source(name)
    if source.name not in PREPARERS:
        raise ValueError(f"nothing to prepare for {name!r}; datasets: {', '.join(PREPARERS)}")
    root = Path(root)
    raw, store = raw_dir(root, source.name), root / "raw"
    if not raw.is_dir():
        raise FileNotFoundError(f"{raw} does not exist: run `vlpet download {source.name} --root {root}` first")
    out = tables_dir(root, source.name)
    out.mkdir(parents=True, exist_ok=True)
    (out / COMPLETE).unlink(missing_ok=True)  # from here until the marker is rewritten the set is unfinished
    remove_stale_temp(out)
    tables, media, referenced, notes = PREPARERS[source.name](raw, store)
    report = PrepareReport(dataset=source.name, notes=notes, out_dir=str(out))
    written = []
    for split, table in tables.items():
        written.append(write_table(_location_free(table, root), out / f"{split}.arrow"))
        report.tables[split] = table.num_rows
    written.append(write_table(_location_free(media, root), out / "media.arrow"))
    present = set(media.column("media_id").to_pylist())
    missing = sorted(referenced - present)
    report.media_present, report.media_referenced, report.media_missing = len(present), len(referenced), len(missing)
    report.missing_examples = missing[:MISSING_LIST_LIMIT]
    missing_file = out / "missing_media.txt"
    if missing:
        write_text_atomic(missing_file, "\n".join(missing) + "\n")
        hint = "; ".join(f"{a.name}: {a.how_to_get} (put them under {raw / a.put_under})" for a in source.manual)
        report.notes.append(f"{len(missing)} of {len(referenced)} referenced media are missing "
                            f"(list: {missing_file}). {hint}")
    elif missing_file.exists():
        missing_file.unlink()
    written.append(write_text_atomic(out / "prepare_report.json", json.dumps(report.as_dict(), indent=2)))
    if missing:
        written.append(missing_file)
    files = {p.relative_to(out).as_posix(): {"bytes": p.stat().st_size, "sha256": hash_file(p)} for p in written}
    write_text_atomic(out / COMPLETE, json.dumps({"dataset": source.name, "files": files}, indent=1, sort_keys=True))
    return report
