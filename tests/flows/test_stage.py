"""The Stage executor on a toy stage: key from keyed parameters, input content and code; hit, miss and
invalidation; lineage written once per computed run with everything the records promise; refs linked or
recorded; typed parameters (unknown fields refused, paths made absolute)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import ClassVar

import pydantic
import pytest

from flows.caching import FileHasher, code_version
from flows.lineage import LineageStore
from flows.stages.core import (
    AbsPath,
    Artifact,
    Ref,
    Stage,
    StageContext,
    StageOutput,
    StageParams,
    execute,
    plan,
)


class UpperParams(StageParams):
    src: AbsPath
    root: AbsPath
    suffix: str = "!"
    verbose: bool = False  # cannot change the output: unkeyed


class Upper(Stage[UpperParams]):
    """Upper-cases ``src`` into ``<root>/out.txt``; records the output from the source (a ref recorded on
    the fly) and a second artifact made from the first."""

    name = "upper"
    Params = UpperParams
    packages = ("flows",)
    unkeyed = frozenset({"verbose"})
    calls: ClassVar[list[str]] = []

    def inputs(self, params: UpperParams, hasher: FileHasher) -> dict[str, str]:
        return {"src": hasher.file(params.src)}

    def run(self, params: UpperParams, ctx: StageContext) -> StageOutput:
        self.calls.append(params.src)
        text = Path(params.src).read_text().upper() + params.suffix
        out = ctx.root / "out.txt"
        out.write_text(text)
        (ctx.root / "len.txt").write_text(str(len(text)))
        src = Ref("source", params.src, stage="external", flags={"synthetic_data": True})
        return StageOutput({"chars": len(text), "option": ctx.option("colour")}, [str(out), str(ctx.root / "len.txt")],
                           [Artifact("upper", "upper-text", out, [src], {"suffix": params.suffix},
                                     counts={"chars": len(text)}, device="cpu"),
                            Artifact("length", "length", ctx.root / "len.txt", ["upper"])],
                           counts={"chars": len(text)}, main="upper")


UPPER = Upper()


@pytest.fixture()
def toy(tmp_path):
    Upper.calls.clear()
    src = tmp_path / "src.txt"
    src.write_text("hello")
    return src, tmp_path / "root"


def test_first_run_computes_records_lineage_and_a_rerun_is_a_hit(toy):
    src, root = toy
    params = {"src": str(src), "root": str(root)}
    first = execute(UPPER, params, colour="blue")
    assert first["cache_hit"] is False and first["chars"] == 6 and first["option"] == "blue"
    assert (root / "out.txt").read_text() == "HELLO!"
    lineage = LineageStore(root)
    rec = lineage.get(first["lineage"])
    assert rec.kind == "upper-text" and rec.path == str((root / "out.txt").resolve())
    assert rec.sha256 == lineage.hasher.file(root / "out.txt")  # the record names those bytes
    assert rec.stage == "upper" and rec.params == {"suffix": "!"} and rec.counts == {"chars": 6}
    assert rec.code_version == code_version("flows") and rec.device == "cpu"
    assert {"python", "torch", "prefect"} <= set(rec.versions) and rec.timings["seconds"] >= 0
    assert rec.flags["synthetic_data"] is True  # inherited from the source the stage read
    (src_rec,) = [lineage.get(i["id"]) for i in rec.inputs]
    assert src_rec.kind == "source" and src_rec.sha256 == lineage.hasher.file(src)
    length = lineage.get(first["records"]["length"])
    assert [i["id"] for i in length.inputs] == [rec.id]  # an artifact made from an earlier one of the same run
    cached = json.loads((root / ".vlpet" / "cache" / "upper" / f"{first['cache_key']}.json").read_text())
    assert cached["result"]["lineage"] == rec.id
    n_records = len(list(lineage.records()))

    again = execute(UPPER, {**params, "verbose": True})  # an unkeyed parameter changes nothing
    assert again["cache_hit"] is True and len(Upper.calls) == 1
    assert (again["cache_key"], again["lineage"], again["chars"]) == (first["cache_key"], rec.id, 6)
    assert len(list(LineageStore(root).records())) == n_records  # a hit writes no lineage


def test_changed_input_keyed_parameter_or_output_reruns(toy):
    src, root = toy
    params = {"src": str(src), "root": str(root)}
    key = execute(UPPER, params)["cache_key"]
    assert execute(UPPER, {**params, "suffix": "?"})["cache_key"] != key  # keyed parameter
    assert len(Upper.calls) == 2
    src.write_text("bye")
    third = execute(UPPER, params)
    assert third["cache_hit"] is False and third["cache_key"] != key and (root / "out.txt").read_text() == "BYE!"
    (root / "out.txt").write_text("edited by hand")  # an output no longer what the cache vouches for
    assert execute(UPPER, params)["cache_hit"] is False
    assert execute(UPPER, params, force=True)["cache_hit"] is False
    assert len(Upper.calls) == 5


def test_plan_is_the_key_without_running(toy):
    src, root = toy
    pl = plan(UPPER, {"src": str(src), "root": str(root)})
    assert Upper.calls == [] and not (root / "out.txt").exists()
    assert pl.inputs == {"src": FileHasher(None).file(src), "code_version": code_version("flows")}
    assert execute(UPPER, {"src": str(src), "root": str(root)})["cache_key"] == pl.key


def test_parameters_are_typed_and_paths_absolute(toy, monkeypatch):
    src, root = toy
    with pytest.raises(pydantic.ValidationError, match="colour"):
        execute(UPPER, {"src": str(src), "root": str(root), "colour": "red"})
    absolute = plan(UPPER, {"src": str(src), "root": str(root)}).key
    monkeypatch.chdir(src.parent)
    relative = plan(UPPER, {"src": "src.txt", "root": os.path.relpath(root)}).key
    assert relative == absolute  # the CLI's relative paths and a flow's absolute ones share one key


def test_record_false_writes_neither_cache_nor_lineage(toy):
    src, root = toy
    result = execute(UPPER, {"src": str(src), "root": str(root)}, record=False)
    assert result["cache_hit"] is False and "lineage" not in result
    assert not (root / ".vlpet" / "lineage.jsonl").exists() and not (root / ".vlpet" / "cache" / "upper").exists()


def test_if_recorded_refs_link_only_existing_records(tmp_path):
    from flows.stages.core import resolve_refs

    lineage = LineageStore(tmp_path)
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("a")
    b.write_text("b")
    rec_a = lineage.record("raw", a)
    found = resolve_refs(lineage, [Ref(None, a, if_recorded=True), Ref(None, b, if_recorded=True)])
    assert [r.id for r in found] == [rec_a.id]  # b has no record: left out, not invented
    (folder,) = resolve_refs(lineage, [Ref("raw", tmp_path, sha256="f" * 64, inputs=[Ref(None, a, if_recorded=True)])])
    assert folder.kind == "raw" and [i["id"] for i in folder.inputs] == [rec_a.id]
    (again,) = resolve_refs(lineage, [Ref("raw", tmp_path, sha256="f" * 64)])
    assert again.id == folder.id  # same content: the existing record is linked, not a new one
