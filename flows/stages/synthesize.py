"""The ``synthesize`` stage (the demo's first step): ``pipelines.synth.generate`` writes the synthetic
mini-datasets in their upstream formats, with a SHA256SUMS per source, so the folder serves as a verified
``file://`` mirror for the ``download`` stage. Keyed by (scale, seed, mirror path) and the ``pipelines`` code;
no lineage records of its own (the download stage records every file it takes from the mirror, flagged
``synthetic_data``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from flows.stages.core import AbsPath, Stage, StageContext, StageOutput, StageParams, execute


class SynthesizeParams(StageParams):
    mirror: AbsPath
    root: AbsPath
    scale: Literal["tiny", "demo"] = "demo"
    seed: int = 0


class Synthesize(Stage[SynthesizeParams]):
    name = "synthesize"
    Params = SynthesizeParams
    packages = ("pipelines",)
    unkeyed = frozenset({"root"})

    def run(self, params: SynthesizeParams, ctx: StageContext) -> StageOutput:
        from pipelines.fetch import write_sha256sums
        from pipelines.synth import generate

        mirror = Path(params.mirror)
        manifest = generate(mirror, scale=params.scale, seed=params.seed)
        for source in manifest.counts:
            if (mirror / source).is_dir():
                write_sha256sums(mirror / source)
        return StageOutput({"mirror": str(mirror), "counts": manifest.counts}, [str(mirror)],
                           counts={"files": len(manifest.files)})


SYNTHESIZE = Synthesize()


def run_synthesize(mirror: str | Path, root: str | Path, scale: str = "demo", seed: int = 0) -> dict[str, Any]:
    return execute(SYNTHESIZE, {"mirror": str(mirror), "root": str(root), "scale": scale, "seed": seed})
