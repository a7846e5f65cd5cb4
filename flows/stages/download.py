"""The ``download`` stage: ``pipelines.fetch.fetch_dataset`` (verified download + safe unpacking) of one dataset.

Keyed by the dataset, mirror, options and, for a ``file://`` mirror or ``media_from`` folder, their content;
for an HTTP mirror by its parameters (a hit also needs every downloaded file unchanged on disk). One lineage
record per downloaded file (kind ``raw``), flagged ``synthetic_data`` when the mirror is the project's
synthetic data.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flows.caching import FileHasher
from flows.stages.core import AbsPath, Artifact, Stage, StageContext, StageOutput, StageParams, abspath, execute


class DownloadParams(StageParams):
    dataset: str
    root: AbsPath = "data"
    mirror: str | None = None
    base_urls: dict[str, str] | None = None
    media_from: AbsPath | None = None
    include_optional: bool = False
    max_concurrency: int = 4


def is_synthetic_mirror(mirror: str | None) -> bool:
    """A ``file://`` mirror written by ``pipelines.synth.generate`` (it leaves its manifest at the top)."""
    if not mirror or not mirror.startswith("file://"):
        return False
    top = Path(mirror.removeprefix("file://"))
    try:
        return json.loads((top / "manifest.json").read_text()).get("format") == "vlpet-synth-manifest"
    except (OSError, ValueError):
        return False


def _mirror_dir(mirror: str | None, dataset: str) -> Path | None:
    if mirror and mirror.startswith("file://"):
        d = Path(mirror.removeprefix("file://")) / dataset
        return d if d.is_dir() else None
    return None


class Download(Stage[DownloadParams]):
    name = "download"
    Params = DownloadParams
    packages = ("pipelines",)
    unkeyed = frozenset({"max_concurrency"})

    def key_params(self, params: DownloadParams) -> dict[str, Any]:
        from pipelines.fetch import raw_dir
        from pipelines.sources import get_source

        name = get_source(params.dataset).name  # an unknown dataset is a clear error before any work
        return {**super().key_params(params), "dataset": name, "raw_dir": abspath(raw_dir(Path(params.root), name))}

    def inputs(self, params: DownloadParams, hasher: FileHasher) -> dict[str, str]:
        inputs: dict[str, str] = {}
        mdir = _mirror_dir(params.mirror, params.dataset)
        if mdir is not None:
            inputs["mirror"] = hasher.tree(mdir)
        if params.media_from:
            inputs["media_from"] = hasher.digest(params.media_from)
        return inputs

    def run(self, params: DownloadParams, ctx: StageContext) -> StageOutput:
        from pipelines.fetch import MANIFEST, fetch_dataset
        from pipelines.sources import get_source

        name = get_source(params.dataset).name
        report = fetch_dataset(name, ctx.root, mirror=params.mirror, base_urls=params.base_urls,
                               include_optional=params.include_optional, max_concurrency=params.max_concurrency,
                               progress=ctx.option("progress", False),
                               media_from=Path(params.media_from) if params.media_from else None)
        synthetic = is_synthetic_mirror(params.mirror)
        out = Path(report.raw_dir)
        artifacts, outputs = [], [str(out / MANIFEST)]
        for f in report.files:
            path = out / str(f["name"])
            ctx.hasher.remember(path, str(f["sha256"]))  # verified by the downloader: no second read
            artifacts.append(Artifact(str(f["name"]), "raw", path, sha256=str(f["sha256"]),
                                      params={"dataset": name, "url": f["url"],
                                              "checksum_source": f["checksum_source"]},
                                      flags={"synthetic_data": synthetic}, counts={"bytes": f["size"]}))
            outputs.append(str(path))
        fetched = sum(not f.get("skipped") for f in report.files)
        result = {"dataset": name, "raw_dir": report.raw_dir, "files": len(report.files), "fetched": fetched,
                  "unpacked": report.unpacked, "manual": [asdict(m) for m in report.manual],
                  "synthetic_data": synthetic}
        return StageOutput(result, outputs, artifacts, counts={"files": len(report.files), "fetched": fetched})


DOWNLOAD = Download()


def run_download(dataset: str, root: str | Path = "data", *, force: bool = False, progress: bool = False,
                 **params: Any) -> dict[str, Any]:
    """The ``download`` stage through the executor (``DownloadParams`` fields as keywords)."""
    return execute(DOWNLOAD, {"dataset": dataset, "root": str(root), **_strs(params)}, force=force,
                   progress=progress)


def _strs(params: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in params.items()}
