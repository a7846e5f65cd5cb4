"""Task tables: unified table ⋈ feature snapshot, provenance metadata, explicit exclusion, HF datasets compat."""

from __future__ import annotations

import pyarrow as pa
import pytest

from features.media import hash_file
from features.store import FeatureStore
from pipelines.tables import read_table
from pipelines.tasks import TaskDataset, build_task, build_task_table, open_task_table, task_table_metadata


@pytest.fixture(scope="module")
def built(task_tables):
    return task_tables


def test_every_task_builds_with_provenance(built):
    base, paths = built.base, built.paths
    root = built.root
    for task, (dataset, split) in built.splits.items():
        table = open_task_table(paths[task])
        meta = task_table_metadata(table.schema)
        source = root / "tables" / dataset / f"{split}.arrow"
        assert meta["task"] == task and meta["split"] == split
        assert meta["source_sha256"] == hash_file(source)
        assert meta["snapshot_id"] == FeatureStore.open_reader(base / "stores" / dataset).snapshot_id
        assert table.num_rows == read_table(source).num_rows and meta["excluded"] == "0", task
        assert all(len(m) == (2 if task == "nlvr2" else 1) for m in table.column("media_ids").to_pylist())


def test_real_rows_give_the_spec_text(built):
    paths = built.paths
    tvqa = TaskDataset(paths["tvqa"])[0]
    from vlpet.batch import format_input, task_format

    assert format_input(task_format("tvqa"), tvqa) == (
        "[Subs] Robin : It's not what it looks like. [Q] How many shapes are in the video? [TS] (0-0.06) "
        "[Choices] a0: Five. a1: None. a2: Four. a3: One. a4: Three. tvqa: ")
    assert tvqa["target"] == "a3"
    nlvr = TaskDataset(paths["nlvr2"])[0]
    assert format_input(task_format("nlvr2"), nlvr) == "nlvr: The right image contains a blue shape."
    assert nlvr["target"] == "false" and nlvr["vis"].shape == (2, 49, 16)
    vqa = TaskDataset(paths["vqa"])[0]
    assert format_input(task_format("vqa"), vqa) == "vqa: How many shapes are there?" and vqa["target"] == "3"
    assert TaskDataset(paths["gqa"])[0]["text"] == "What color is the square?"
    tvc = TaskDataset(paths["tvc"])
    assert format_input(task_format("tvc"), tvc[0]) == (
        "[Subs] Robin : It's not what it looks like. [TS] ([0.01, 0.06]) tvc: ")
    assert [tvc[0]["target"], tvc[1]["target"]] == ["The orange circle stays still.",
                                                    "The circle, which is orange, stays still."]


def test_captions_expand_in_training_and_keep_all_references_in_eval(built):
    paths = built.paths
    for task in ("coco", "tvc", "yc2c"):
        table = open_task_table(paths[task])
        n_caps = sum(len(c) for c in table.column("targets").to_pylist())
        train, evaluation = TaskDataset(paths[task], train=True), TaskDataset(paths[task], train=False)
        assert len(train) == n_caps and len(evaluation) == table.num_rows
        flat = [c for cs in table.column("targets").to_pylist() for c in cs]
        assert [train[i]["target"] for i in range(len(train))] == flat
        assert evaluation[0]["references"] == table.column("targets")[0].as_py()


def test_video_features_are_views_of_the_store(built):
    base, paths = built.base, built.paths
    d = TaskDataset(paths["how2qa"])
    ex = d[0]
    media = open_task_table(paths["how2qa"]).column("media_ids")[0].as_py()[0]
    expected = FeatureStore.open_reader(base / "stores" / "how2qa").get(media)
    assert ex["vis"].shape == expected.shape and (ex["vis"] == expected).all() and not ex["vis"].flags.writeable


def test_missing_and_quarantined_media_are_reported_and_excluded(built, tmp_path):
    root = built.root
    table = read_table(root / "tables" / "vqa" / "karpathy_train.arrow")
    media = sorted(set(table.column("media_id").to_pylist()))
    absent, bad = media[0], media[1]
    store = tmp_path / "store"
    built.make_store(store, root / "tables" / "vqa" / "media.arrow", False, absent={absent}, quarantined={bad})
    report = build_task_table("vqa", "karpathy_train", root / "tables" / "vqa" / "karpathy_train.arrow", store,
                              tmp_path / "vqa.arrow")
    rows = table.to_pylist()
    expected = [r["question_id"] for r in rows if r["media_id"] in (absent, bad)]
    assert expected and report.excluded == len(expected) and report.excluded_example_ids == expected
    assert report.missing_media == [absent] and report.quarantined_media == [bad]
    out = open_task_table(tmp_path / "vqa.arrow")
    assert out.num_rows == report.rows_out == len(rows) - len(expected)
    assert not {absent, bad} & {m for ms in out.column("media_ids").to_pylist() for m in ms}
    assert task_table_metadata(out.schema)["excluded"] == str(len(expected))


def test_task_table_opens_with_hf_datasets(built):
    from datasets import Dataset

    paths = built.paths
    for task in ("vqa", "tvqa"):
        ds = Dataset.from_file(str(paths[task]))
        assert len(ds) == open_task_table(paths[task]).num_rows and "media_ids" in ds.column_names


def test_clear_errors(built, tmp_path):
    base, paths = built.base, built.paths
    root = built.root
    with pytest.raises(ValueError, match="needs a ragged"):
        build_task_table("tvqa", "train", root / "tables" / "tvqa" / "train.arrow", base / "stores" / "vqa",
                         tmp_path / "x.arrow")
    with pytest.raises(ValueError, match=r"nlvr2/train.arrow: task 'vqa' needs columns "
                                        r"\['question_id', 'question', 'answers', 'media_id'\]"):
        build_task_table("vqa", "train", root / "tables" / "nlvr2" / "train.arrow", base / "stores" / "nlvr2",
                         tmp_path / "x.arrow")
    with pytest.raises(ValueError, match="unknown task 'vqa3'"):
        build_task_table("vqa3", "train", paths["vqa"], base / "stores" / "vqa", tmp_path / "x.arrow")
    plain = tmp_path / "plain.arrow"
    with pa.OSFile(str(plain), "wb") as sink, pa.ipc.new_stream(sink, pa.schema([("a", pa.int64())])) as w:
        w.write_table(pa.table({"a": [1]}))
    with pytest.raises(ValueError, match=r"plain\.arrow: Arrow table without vlpet_task"):
        open_task_table(plain)
    assert not (tmp_path / "x.arrow").exists()


def test_build_task_on_the_standard_layout(built):
    import json

    base = built.base
    root = built.root
    report = build_task(root, "gqa", "valid", base / "stores" / "gqa")
    out = root / "tasks" / "gqa" / "valid.arrow"
    assert open_task_table(out).num_rows == report.rows_out == report.rows_in > 0
    assert json.loads((root / "tasks" / "gqa" / "valid.report.json").read_text())["rows_out"] == report.rows_out
    assert not [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")]  # atomic: no temp left behind


def test_vqa_unlabelled_and_empty_soft_labels(built, tmp_path):
    """null answers (test split) → no target; [] (no answer in the vocabulary) → "" with loss weight 0."""
    from pipelines.tables.arrow_io import write_table

    base = built.base
    root = built.root
    table = read_table(root / "tables" / "vqa" / "karpathy_train.arrow").slice(0, 3)
    answers = table.column("answers").to_pylist()
    table = table.set_column(table.schema.get_field_index("answers"), table.schema.field("answers"),
                             pa.array([answers[0], [], None], type=table.schema.field("answers").type))
    write_table(table, tmp_path / "u.arrow")
    build_task_table("vqa", "x", tmp_path / "u.arrow", base / "stores" / "vqa", tmp_path / "t.arrow")
    train, evaluation = TaskDataset(tmp_path / "t.arrow"), TaskDataset(tmp_path / "t.arrow", train=False)
    assert train[0]["target"] in {a["answer"] for a in answers[0]}
    assert (train[1]["target"], train[1]["weight"]) == ("", 0.0)
    assert "target" not in train[2] and "target" not in evaluation[2] and "target" not in evaluation[1]
