"""The Stage and its one executor: what every pipeline step shares, written once (no Prefect here).

A ``Stage`` says *what* a step is: its ``name``, its typed parameters (a pydantic ``Params`` model), the
content of what it reads (``inputs``: name -> content hash), the packages whose code it runs (``packages``,
hashed into the code version) and ``run``, the work, returning a ``StageOutput``: the result (JSON), the paths
it wrote, the artifacts to record in the lineage (``Artifact``, linked to what they were made from by
``Ref``) and its counts. ``execute`` does the rest, the same for every stage and every caller (CLI, Prefect
task, test): key = sha256(stage, keyed params, input hashes, code version); a hit returns the recorded result
without running; a miss runs the stage, writes one lineage record per artifact (parameters, code and library
versions, device, counts, timings, flags) and stores the result atomically under ``<data root>/.vlpet/cache``.

Messages go to the ``flows.stages`` logger (the Prefect layer forwards them to the run's logs).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict

from flows.caching import FileHasher, StageCache, code_version, content_key
from flows.lineage import LineageRecord, LineageStore

log = logging.getLogger("flows.stages")


def abspath(path: str | os.PathLike[str] | None) -> str | None:
    """An absolute, resolved path string (None stays None): parameters name files the same from any cwd."""
    return None if path is None else str(Path(path).expanduser().resolve())


AbsPath = Annotated[str, AfterValidator(abspath)]
"""A path parameter, made absolute on validation: a CLI run and a flow run of the same files share a key."""


class StageParams(BaseModel):
    """Base of every stage's parameters: strict (an unknown field is an error), JSON-serialisable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


P = TypeVar("P", bound=StageParams)


@dataclass(frozen=True)
class Ref:
    """An artifact a stage read. The executor links it to its latest lineage record with the same content, or
    records it now (an input made outside the stages: a raw folder, a table prepared by hand). ``if_recorded``:
    link only when a record exists, never create one (files another stage may or may not have recorded)."""

    kind: str | None
    path: str | os.PathLike[str]
    sha256: str | None = None
    stage: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    flags: Mapping[str, bool] = field(default_factory=dict)
    counts: Mapping[str, Any] = field(default_factory=dict)
    inputs: Sequence[Ref] = ()
    if_recorded: bool = False


@dataclass(frozen=True)
class Artifact:
    """An artifact a stage wrote, recorded in the lineage by the executor. ``inputs``: ``Ref``s, or the
    ``name`` of an artifact listed earlier in the same ``StageOutput``."""

    name: str
    kind: str
    path: str | os.PathLike[str]
    inputs: Sequence[Ref | str] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    counts: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    flags: Mapping[str, bool] = field(default_factory=dict)
    device: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class StageOutput:
    """What ``Stage.run`` returns. ``result``: JSON for callers and the cache; ``outputs``: the paths written
    (the cache re-checks their content before trusting a hit); ``main``: the artifact whose record id becomes
    ``result["lineage"]`` (None: the list of every record id)."""

    result: dict[str, Any]
    outputs: list[str] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    main: str | None = None


@dataclass
class StageContext:
    """What a running stage may use besides its parameters: the data root, the memoised hasher, its input
    hashes, and run options that do not change the result (progress bars, a Dask shard executor, ...)."""

    root: Path
    hasher: FileHasher
    inputs: dict[str, str]
    options: dict[str, Any]

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


class Stage(Generic[P]):
    """One pipeline step. Subclasses set ``name``, ``Params``, ``packages`` and implement ``data_root``,
    ``inputs`` and ``run``; ``unkeyed`` names parameters that cannot change the result (e.g. decoding workers).
    ``cached = False`` for a stage that must run every time (it is still recorded in the lineage)."""

    name: ClassVar[str]
    Params: ClassVar[type[StageParams]]
    packages: ClassVar[tuple[str, ...]]
    unkeyed: ClassVar[frozenset[str]] = frozenset()
    cached: ClassVar[bool] = True

    def data_root(self, params: P) -> Path:
        """Where this stage's cache and lineage live (``<root>/.vlpet``)."""
        return Path(params.root)  # type: ignore[attr-defined]

    def key_params(self, params: P) -> dict[str, Any]:
        """The parameters in the cache key: every field but the ``unkeyed`` ones."""
        return params.model_dump(mode="json", exclude=set(self.unkeyed))

    def inputs(self, params: P, hasher: FileHasher) -> dict[str, str]:
        """Content hashes of everything the stage reads (files, folders, upstream snapshots)."""
        return {}

    def run(self, params: P, ctx: StageContext) -> StageOutput:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class Plan:
    """A stage's key computed without running it (``plan``): what ``execute`` would look up."""

    stage: Stage
    params: StageParams
    root: Path
    cache: StageCache
    inputs: dict[str, str]
    key: str


def plan(stage: Stage[P], params: P | Mapping[str, Any]) -> Plan:
    """Validate ``params`` and compute the stage's cache key (input hashes + code version)."""
    p = params if isinstance(params, stage.Params) else stage.Params.model_validate(params)
    root = stage.data_root(p)  # type: ignore[arg-type]
    cache = StageCache(root)
    inputs = dict(stage.inputs(p, cache.hasher))  # type: ignore[arg-type]
    inputs["code_version"] = code_version(*stage.packages)
    return Plan(stage, p, root, cache, inputs, content_key(stage.name, stage.key_params(p), inputs))


def execute(stage: Stage[P], params: P | Mapping[str, Any], *, force: bool = False, record: bool = True,
            **options: Any) -> dict[str, Any]:
    """Run ``stage`` once: a valid cached result is returned as it is (``cache_hit`` True); otherwise the stage
    runs, its artifacts are recorded in the lineage and the result is stored. ``record=False`` (non-primary
    DDP ranks) runs without writing cache or lineage. ``options`` reach the stage as ``ctx.options``."""
    pl = plan(stage, params)
    t = time.perf_counter()
    if stage.cached and not force:
        found = pl.cache.get(stage.name, pl.key)
        if found is not None:
            log.info("%s: cache hit, skipped (key %s)", stage.name, pl.key[:12])
            return {**found, "cache_hit": True, "seconds_this_run": round(time.perf_counter() - t, 3)}
    ctx = StageContext(pl.root, pl.cache.hasher, pl.inputs, options)
    out = stage.run(pl.params, ctx)
    seconds = time.perf_counter() - t
    result = dict(out.result)
    result["counts"] = dict(out.counts)
    result["seconds"] = round(seconds, 3)
    if record:
        ids = _record(pl, out, seconds)
        result["records"] = ids
        result["lineage"] = ids[out.main] if out.main else list(ids.values())
        result["outputs"] = pl.cache.hash_outputs(out.outputs)
        result["cache_key"] = pl.key
        result["cache_inputs"] = pl.inputs
        if stage.cached:
            pl.cache.put(stage.name, pl.key, result)
    log.info("%s: computed in %.2f s (key %s) %s", stage.name, seconds, pl.key[:12],
             " ".join(f"{k}={v}" for k, v in out.counts.items()))
    return {**result, "cache_hit": False, "seconds_this_run": round(seconds, 3)}


def resolve_refs(lineage: LineageStore, refs: Sequence[Ref]) -> list[LineageRecord]:
    """The records of ``refs``: each one's latest record with the same content, else a new one (inputs first);
    an ``if_recorded`` ref without a record is left out."""
    out = []
    for ref in refs:
        if ref.if_recorded:
            rec = lineage.find(ref.path)
            if rec is not None and (ref.kind is None or rec.kind == ref.kind):
                out.append(rec)
            continue
        parents = resolve_refs(lineage, ref.inputs)
        out.append(lineage.ensure(str(ref.kind), ref.path, sha256=ref.sha256, inputs=parents, stage=ref.stage,
                                  params=dict(ref.params), flags=dict(ref.flags), counts=dict(ref.counts)))
    return out


def _record(pl: Plan, out: StageOutput, seconds: float) -> dict[str, str]:
    lineage = LineageStore(pl.root, pl.cache.hasher)
    made: dict[str, LineageRecord] = {}
    for a in out.artifacts:
        inputs: list[LineageRecord] = []
        for i in a.inputs:
            inputs.extend([made[i]] if isinstance(i, str) else resolve_refs(lineage, [i]))
        made[a.name] = lineage.record(
            a.kind, a.path, inputs, dict(a.params), sha256=a.sha256, code_version=pl.inputs["code_version"],
            device=a.device, counts=dict(a.counts), timings={"seconds": seconds, **a.timings}, flags=dict(a.flags),
            stage=pl.stage.name, extra=dict(a.extra))
    return {name: rec.id for name, rec in made.items()}


