"""The ``prepare`` stage: ``pipelines.prepare.prepare_dataset``, raw files -> unified tables + media index.

Keyed by the content of every raw folder it reads (its own and, for VQA and TVC, COCO's and TVQA's) and the
code. Records each table and the media index, linked to the raw folders (whose records link to the files
the download stage recorded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows.caching import FileHasher
from flows.stages.core import AbsPath, Artifact, Ref, Stage, StageContext, StageOutput, StageParams, execute

# Raw folders each dataset's preparation reads besides its own (pipelines.prepare): VQA's Karpathy splits and
# images come from COCO, TVC's videos and subtitles from TVQA.
PREPARE_READS: dict[str, tuple[str, ...]] = {"vqa": ("coco",), "tvc": ("tvqa",)}


class PrepareParams(StageParams):
    dataset: str
    root: AbsPath = "data"


def _reads(dataset: str) -> tuple[str, ...]:
    from pipelines.sources import get_source

    name = get_source(dataset).name
    return (name, *PREPARE_READS.get(name, ()))


def _raw_ref(root: Path, dataset: str, digest: str) -> Ref:
    """A dataset's raw folder (content = tree digest), linked to the downloaded files' records."""
    from pipelines.fetch import MANIFEST, raw_dir

    raw = raw_dir(root, dataset)
    try:
        files = json.loads((raw / MANIFEST).read_text()).get("files", [])
    except (OSError, ValueError):
        files = []
    downloaded = [Ref(None, raw / str(f.get("name")), if_recorded=True) for f in files]
    return Ref("raw", raw, sha256=digest, stage="download", params={"dataset": dataset}, inputs=downloaded,
               counts={"files_downloaded": len(downloaded)})


class Prepare(Stage[PrepareParams]):
    name = "prepare"
    Params = PrepareParams
    packages = ("pipelines", "features")

    def key_params(self, params: PrepareParams) -> dict[str, Any]:
        return {**super().key_params(params), "dataset": _reads(params.dataset)[0]}

    def inputs(self, params: PrepareParams, hasher: FileHasher) -> dict[str, str]:
        from pipelines.fetch import MANIFEST, raw_dir

        root, reads = Path(params.root), _reads(params.dataset)
        inputs: dict[str, str] = {}
        for d in reads:
            raw = raw_dir(root, d)
            if d == reads[0] and not raw.is_dir():
                raise FileNotFoundError(f"{raw} does not exist: run the download flow (or `vlpet download {d} "
                                        f"--root {root}`) first")
            # MANIFEST.json is the downloader's record (rewritten by every download), not something prepare reads.
            inputs[f"raw/{d}"] = hasher.tree(raw, exclude=(MANIFEST,)) if raw.is_dir() else "absent"
        return inputs

    def run(self, params: PrepareParams, ctx: StageContext) -> StageOutput:
        from pipelines.prepare import prepare_dataset, tables_dir

        reads = _reads(params.dataset)
        name = reads[0]
        report = prepare_dataset(name, ctx.root)
        raws = [_raw_ref(ctx.root, d, ctx.inputs[f"raw/{d}"]) for d in reads if ctx.inputs[f"raw/{d}"] != "absent"]
        out = tables_dir(ctx.root, name)
        artifacts = [Artifact(f"table/{split}", "table", out / f"{split}.arrow", raws,
                              {"dataset": name, "split": split}, counts={"rows": rows})
                     for split, rows in report.tables.items()]
        artifacts.append(Artifact("media-index", "media-index", out / "media.arrow", raws, {"dataset": name},
                                  counts={"present": report.media_present, "referenced": report.media_referenced,
                                          "missing": report.media_missing}))
        tables = {split: {"path": str(out / f"{split}.arrow"), "rows": rows} for split, rows in report.tables.items()}
        result = {"dataset": name, "tables_dir": str(out), "tables": tables, "media_index": str(out / "media.arrow"),
                  "media_present": report.media_present, "media_referenced": report.media_referenced,
                  "media_missing": report.media_missing, "coverage": round(report.coverage, 6),
                  "notes": report.notes, "missing_examples": list(report.missing_examples)[:20]}
        return StageOutput(result, [str(out)], artifacts, counts={"tables": len(tables), "rows": sum(
            report.tables.values()), "media_missing": report.media_missing})


PREPARE = Prepare()


def run_prepare(dataset: str, root: str | Path = "data", *, force: bool = False) -> dict[str, Any]:
    """The ``prepare`` stage through the executor."""
    return execute(PREPARE, {"dataset": dataset, "root": str(root)}, force=force)
