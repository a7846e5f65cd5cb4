"""Training configs (pydantic, what users write) and the named presets that reproduce the paper's scripts.

Every hyper-parameter of docs/method.md §5 is a field here, so a run's saved ``config.json`` shows all of them.
The paper presets (``vl-pet-{large,middlex,middley,small}-{bart,t5}-image`` and ``…-bart-video``) copy the
official scripts: AdamW (eps 1e-6, wd 0.01), warm-up 10 %, clip 5, fp32, 20 epochs, batch 500 (BART image) /
300 (T5) / 50 (video), lr 1e-3 / 3e-4 / 7e-4, seed 42, the data order seeded by 0 (the official
DistributedSampler seed), last-epoch model for image tasks and best validation average for video tasks.
The ``synthetic-*`` presets are small runs for the embedded synthetic data on the tiny random backbones.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vlpet.catalog import CATALOG, task_spec, tasks_in
from vlpet.config import known_methods

# Preset membership and the paper's splits (docs/data.md §1, docs/method.md §5-6) come from the task catalogue.
IMAGE_TASKS = tasks_in("image")
VIDEO_TASKS = tasks_in("video")
TRAIN_SPLITS: dict[str, list[str]] = {name: list(spec.train_splits) for name, spec in CATALOG.items()}
VAL_SPLITS: dict[str, str] = {name: spec.val_split for name, spec in CATALOG.items()}
TEST_SPLITS: dict[str, str] = {name: spec.test_split for name, spec in CATALOG.items()}


class PretrainConfig(BaseModel):
    """Denoising pre-training of a *random* tiny backbone before the PET stage (``vlpet.pretrain``)."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(300, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    mask_prob: float = Field(0.3, gt=0, lt=1)
    tokenizer_vocab_size: int = Field(2000, ge=300, description="BPE vocabulary trained on the data's text")


class TrainConfig(BaseModel):
    """One training run. Unknown fields are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "custom"
    description: str = ""
    backbone: str = "bart-base"
    weights: Literal["official", "random"] = Field(
        "official", description="official: the backbone's public checkpoint (downloaded on first use) or a local "
                                "directory; random: random init of the named architecture, asked for by name")
    method: str = "vl-pet-large"
    method_overrides: dict[str, Any] = Field(default_factory=dict)
    tasks: list[str] = Field(default_factory=lambda: list(IMAGE_TASKS))
    train_splits: dict[str, list[str]] = Field(default_factory=lambda: dict(TRAIN_SPLITS))
    val_splits: dict[str, str] = Field(default_factory=lambda: dict(VAL_SPLITS))
    test_splits: dict[str, str] = Field(default_factory=lambda: dict(TEST_SPLITS))
    feat_dim: int = Field(2048, ge=1)
    feature_norm: Literal["none", "standardize"] = Field(
        "none", description="standardize: per-dimension mean/std of the training features (for random-init CLIP "
                            "features; the paper uses raw features)")
    dropout: float | None = Field(
        None, ge=0, lt=1, description="replace every dropout probability of the backbone (None: the backbone's "
                                      "own, 0.1 for BART/T5 as the paper; 0 suits the few-step tiny synthetic runs)")
    # Optimisation (docs/method.md §5)
    lr: float = Field(1e-3, gt=0)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(500, ge=1, description="base batch size B; per-task sizes derive from it")
    task_batch_sizes: dict[str, int] | None = None
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    clip_grad_norm: float | None = 5.0
    weight_decay: float = 0.01
    adam_eps: float = 1e-6
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_accum_steps: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (schedule too)")
    seed: int = 42
    loader_seed: int = Field(0, description="data order seed; the official DistributedSampler default is 0")
    multitask: Literal["roundrobin", "proportional", "temperature"] = "roundrobin"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    num_workers: int = Field(0, ge=0)
    # Checkpoints, logging, selection
    save_every_steps: int | None = Field(None, ge=1, description="also checkpoint every N steps (always per epoch)")
    keep_checkpoints: int = Field(2, ge=1)
    log_every_steps: int = Field(10, ge=1)
    checkpoint_selection: Literal["last", "best-val"] = "last"
    validate_every_epoch: bool = False
    eval_batch_size: int = Field(64, ge=1)
    generation: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-task generate overrides")
    pretrain: PretrainConfig | None = None

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        unknown = [t for t in tasks if t not in CATALOG]
        if unknown or not tasks:
            raise ValueError(f"unknown tasks {unknown} (known: {sorted(CATALOG)})" if unknown else "no tasks")
        kinds = {task_spec(t).group for t in tasks}
        if len(kinds) > 1:
            raise ValueError(f"tasks {tasks} mix image and video tasks; the paper trains them as separate runs "
                             "(their features differ: 2048-d grids vs 512-d frames)")
        return tasks

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        if method not in known_methods():
            raise ValueError(f"unknown method {method!r}; known: {known_methods()}")
        return method

    def is_video(self) -> bool:
        return task_spec(self.tasks[0]).group == "video"


def _paper(granularity: str, backbone: str, kind: str) -> TrainConfig:
    t5 = backbone == "t5-base"
    video = kind == "video"
    return TrainConfig(
        name=f"vl-pet-{granularity}-{'t5' if t5 else 'bart'}-{kind}",
        description=(f"VL-PET-{granularity} on {backbone}, {kind}-text tasks: the official "
                     f"{'video-text/' if video else 'image-text/'}{'T5-' if t5 else ''}VL-PET-{granularity}.sh"),
        backbone=backbone, method=f"vl-pet-{granularity}",
        tasks=list(VIDEO_TASKS if video else IMAGE_TASKS), feat_dim=512 if video else 2048,
        lr=7e-4 if video else (3e-4 if t5 else 1e-3), epochs=20, batch_size=50 if video else (300 if t5 else 500),
        seed=42, precision="fp32", checkpoint_selection="best-val" if video else "last",
        validate_every_epoch=video,
    )


def _synthetic(kind: str) -> TrainConfig:
    video = kind == "video"
    return TrainConfig(
        name=f"synthetic-{kind}",
        description=(f"VL-PET-large on tiny-bart (random init + denoising pre-training, no dropout), {kind} tasks "
                     "of the embedded synthetic data; a CPU-minutes run, not the paper's setting"),
        backbone="tiny-bart", method="vl-pet-large",
        tasks=list(VIDEO_TASKS if video else IMAGE_TASKS), feat_dim=512 if video else 2048,
        lr=3e-3 if video else 1e-2, epochs=6, batch_size=16 if video else 48, seed=42, dropout=0.0,
        precision="auto", log_every_steps=5, eval_batch_size=32, feature_norm="standardize",
        generation={"tvqa": {"num_beams": 1}, "how2qa": {"num_beams": 1}, "coco": {"num_beams": 2},
                    "tvc": {"num_beams": 2}, "yc2c": {"num_beams": 2}},
        pretrain=PretrainConfig(steps=200 if video else 300, batch_size=32, lr=1e-3),
        # As the official trainers: video keeps the best validation average, image tasks the last model.
        checkpoint_selection="best-val" if video else "last", validate_every_epoch=video,
        # VALUE's test files carry no labels (as upstream), so the video preset scores its held-out val splits.
        test_splits={**TEST_SPLITS, **({t: VAL_SPLITS[t] for t in VIDEO_TASKS} if video else {})},
    )


def _all_presets() -> dict[str, TrainConfig]:
    out: dict[str, TrainConfig] = {}
    for g in ("large", "middlex", "middley", "small"):
        for backbone, kind in (("bart-base", "image"), ("t5-base", "image"), ("bart-base", "video")):
            cfg = _paper(g, backbone, kind)
            out[cfg.name] = cfg
    for kind in ("image", "video"):
        cfg = _synthetic(kind)
        out[cfg.name] = cfg
    return out


PRESETS: dict[str, TrainConfig] = _all_presets()


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A copy of preset ``name`` with ``overrides`` applied (validated like a user config)."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
    return TrainConfig.model_validate({**base.model_dump(), **overrides})
