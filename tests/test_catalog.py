"""vlpet.catalog: one entry per task, read by everything that used to switch on a task name."""

from __future__ import annotations

import ast
import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest

from vlpet import catalog
from vlpet.batch import collate, format_input, task_batch_sizes
from vlpet.catalog import CATALOG, TASKS, task_spec, tasks_in, tasks_where
from vlpet.evaluation import EvalExample, majority_baseline, score_task
from vlpet.tokenization import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def test_entries_hold_the_papers_splits_groups_and_answers():
    # docs/method.md §5-6 / docs/data.md §5, written out by hand.
    assert {t: task_spec(t).splits for t in TASKS} == {
        "vqa": ("karpathy_train", "karpathy_val", "karpathy_test"), "gqa": ("train", "valid", "testdev"),
        "nlvr2": ("train", "dev", "test1"), "coco": ("train", "val", "test"),
        "tvqa": ("train", "val", "test_public"), "how2qa": ("train_release", "val_release", "test_public_release"),
        "tvc": ("train_release", "val_release", "test_release"),
        "yc2c": ("train_release", "val_release", "test_release")}
    assert tasks_in("image") == ("vqa", "gqa", "nlvr2", "coco")
    assert tasks_in("video") == ("tvqa", "how2qa", "tvc", "yc2c")
    assert tasks_where(answered_from_logits=True) == ("nlvr2",)
    assert task_spec("nlvr2").answer_vocabulary == ("true", "false")
    assert task_spec("tvqa").answer_vocabulary == ("a0", "a1", "a2", "a3", "a4")
    assert task_spec("how2qa").answer_vocabulary == ("a0", "a1", "a2", "a3")
    assert [t for t in TASKS if task_spec(t).is_caption] == ["coco", "tvc", "yc2c"]
    assert all(spec.name == name and spec.dataset == name for name, spec in CATALOG.items())
    with pytest.raises(ValueError, match=r"unknown task 'vqa3'; known: \['coco'"):
        task_spec("vqa3")


def test_old_names_are_views_of_the_catalogue():
    from pipelines.tables.video_qa import NUM_CHOICES
    from pipelines.tasks import TASKS as BUILD_TASKS
    from vlpet.evaluation import GENERATION, LOGIT_TASKS
    from vlpet.train import IMAGE_TASKS, TEST_SPLITS, TRAIN_SPLITS, VAL_SPLITS, VIDEO_TASKS

    assert BUILD_TASKS == TASKS and (IMAGE_TASKS, VIDEO_TASKS) == (tasks_in("image"), tasks_in("video"))
    assert set(GENERATION) | LOGIT_TASKS == set(TASKS) and not set(GENERATION) & LOGIT_TASKS
    assert {t: (TRAIN_SPLITS[t], VAL_SPLITS[t], TEST_SPLITS[t]) for t in TASKS} == {
        t: (list(s.train_splits), s.val_split, s.test_split) for t, s in CATALOG.items()}
    assert NUM_CHOICES == {"tvqa": 5, "how2qa": 4}


def _task_name_switches(path: Path) -> list[str]:
    """``task == "vqa"`` / ``task in ("tvqa", ...)``-style comparisons of a task-named variable to task names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        names = [ast.unparse(s) for s in sides if isinstance(s, (ast.Name, ast.Attribute))]
        consts = [c.value for s in sides for c in ast.walk(s) if isinstance(c, ast.Constant)]
        if any("task" in n.lower() for n in names) and any(c in CATALOG for c in consts):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_module_switches_on_task_names_outside_the_catalogue():
    paths = [p for pkg in ("vlpet", "pipelines/tasks", "flows") for p in sorted((ROOT / pkg).rglob("*.py"))]
    offenders = [hit for p in paths if p.name != "catalog.py" for hit in _task_name_switches(p)]
    assert not offenders, f"read vlpet.catalog instead of comparing task names: {offenders}"


def test_the_guard_sees_a_switch():
    sample = ROOT / "tests" / "test_catalog.py"  # this file's own sample below must be found
    assert any(hit.startswith("tests/test_catalog.py") for hit in _task_name_switches(sample))
    task = "vqa"
    assert task == "vqa"  # the sample


def test_a_new_task_is_one_entry(monkeypatch):
    """An OK-VQA-like task added as one entry (reusing the VQA-family parser and the GQA metric) formats,
    collates, gets its batch share and is scored and baselined, with no other code touched."""
    okvqa = dataclasses.replace(task_spec("gqa"), name="okvqa", dataset="okvqa", prompt="okvqa: ", batch_share=30)
    monkeypatch.setattr(catalog, "CATALOG", {**CATALOG, "okvqa": okvqa})
    assert format_input(task_spec("okvqa"), {"text": "Why?"}) == "okvqa: Why?"
    assert task_batch_sizes(10, ["okvqa", "vqa"]) == {"okvqa": 5, "vqa": 10}
    tok = train_tokenizer(["okvqa why because rain"] * 4, "bart", vocab_size=300)
    batch = collate([{"task": "okvqa", "example_id": "1", "text": "why", "answers": ["rain"], "scores": [1.0],
                      "vis": np.zeros((49, 4), np.float32)}], tok, "okvqa", rng=random.Random(0))
    assert batch.task == "okvqa" and batch.targets == ["rain"] and batch.loss_weights is None
    train = [EvalExample("t1", ["rain"], [1.0]), EvalExample("t2", ["rain"], [1.0]), EvalExample("t3", ["sun"], [1.0])]
    evals = [EvalExample("e1", ["rain"], [1.0]), EvalExample("e2", ["sun"], [1.0])]
    assert score_task("okvqa", {"e1": "rain", "e2": "rain"}, evals)["score"] == pytest.approx(0.5)
    base = majority_baseline("okvqa", train, evals)
    assert (base["prediction"], base["metric"], base["score"]) == ("rain", "accuracy", pytest.approx(0.5))
