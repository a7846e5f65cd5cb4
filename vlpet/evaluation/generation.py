"""Task-specific prediction exactly as the official VL-PET code does it (docs/method.md §5, "Generation").

- VQA/GQA: greedy (``num_beams=1`` is hard-coded upstream despite ``--num_beams 5``), ``max_length`` 20.
- COCO: beam 5, ``max_length`` 40; TVC/YC2C: beam 5, ``max_length`` 20.
- TVQA/How2QA: ``generate()`` with no kwargs, i.e. the backbone's ``generation_config`` (for BART the bart-base hub
  defaults: 4 beams, ``no_repeat_ngram_size`` 3, early stopping); only when that config sets no length do we cap
  at ``max_length`` 20 (transformers 4.2.1's default).
- NLVR2 is not generated: one decoder step compares the logits of the first sub-token of "true" and "false".

Every BART call also inherits ``no_repeat_ngram_size``/``early_stopping`` from the generation config, as upstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from vlpet.batch import VLBatch
from vlpet.catalog import CATALOG

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "GENERATION",
    "LOGIT_TASKS",
    "choice_index",
    "generation_kwargs",
    "nlvr2_decoder_input_ids",
    "predict",
    "predict_batch",
]

DEFAULT_MAX_LENGTH = 20  # transformers' default max_length when neither call nor config sets one

# Per-task kwargs for ``model.generate`` (the catalogue's ``generation``); an empty dict means "backbone
# generation_config defaults". Tasks without them are answered by comparing logits.
GENERATION: dict[str, dict[str, Any]] = {name: dict(spec.generation) for name, spec in CATALOG.items()
                                         if spec.generation is not None}
LOGIT_TASKS: frozenset[str] = frozenset(name for name, spec in CATALOG.items() if spec.answered_from_logits)


def generation_kwargs(model: Any, task: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The kwargs ``predict_batch`` passes to ``model.generate`` for ``task`` (overrides win).

    When neither the kwargs nor the backbone's generation_config bound the length, ``max_length`` 20 is added so
    that "generate with no kwargs" stays bounded and identical to the transformers 4.2.1 behaviour.
    An override of ``max_new_tokens`` drops the task's ``max_length`` so the two never conflict.
    """
    if task in LOGIT_TASKS:
        raise ValueError(f"task {task!r} is scored from logits, not generated (see predict_batch)")
    if task not in GENERATION:
        raise ValueError(f"task {task!r} has no generation settings; known: {sorted(GENERATION)}")
    kwargs = dict(GENERATION[task])
    if overrides:
        if "max_new_tokens" in overrides and "max_length" not in overrides:
            kwargs.pop("max_length", None)
        kwargs.update(overrides)
    if "max_length" not in kwargs and "max_new_tokens" not in kwargs:
        gc = getattr(getattr(model, "backbone", None), "generation_config", None)
        if getattr(gc, "max_length", None) is None and getattr(gc, "max_new_tokens", None) is None:
            kwargs["max_length"] = DEFAULT_MAX_LENGTH
    return kwargs


def choice_index(prediction: str) -> int | None:
    """The answer index of a video-QA prediction such as ``"a3"``: ``int`` of its second character, as upstream
    (so ``"a12"`` reads as 1); None when that character is missing or ``int`` rejects it (e.g. ``"²"``)."""
    text = prediction.strip()
    try:
        return int(text[1])
    except (IndexError, ValueError):
        return None


def _family(model: Any) -> str:
    family = getattr(model, "family", None)
    if family not in ("bart", "t5"):
        raise ValueError(f"cannot tell the backbone family of {type(model).__name__} (family={family!r})")
    return family


def nlvr2_decoder_input_ids(model: Any, tokenizer: Any, batch_size: int, device: torch.device | str
                            ) -> torch.Tensor:
    """The NLVR2 decoder input: ``[decoder_start, bos]`` = ``[</s>, <s>]`` for BART (its labels start with
    ``<s>``), ``[decoder_start]`` = ``[<pad>]`` for T5; one row per example."""
    cfg = model.backbone.config
    start = cfg.decoder_start_token_id
    if start is None:
        raise ValueError("nlvr2: the backbone config has no decoder_start_token_id")
    ids = [start]
    if _family(model) == "bart":
        bos = cfg.bos_token_id if cfg.bos_token_id is not None else getattr(tokenizer, "bos_token_id", None)
        if bos is None:
            raise ValueError("nlvr2: BART needs a bos_token_id (config and tokenizer have none)")
        ids.append(bos)
    return torch.tensor(ids, dtype=torch.long, device=device).unsqueeze(0).expand(batch_size, -1)


def _first_token(tokenizer: Any, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"nlvr2: the tokenizer encodes {word!r} to no tokens")
    return int(ids[0])


def _predict_nlvr2(model: Any, tokenizer: Any, batch: VLBatch) -> list[str]:
    """Upstream NLVR2 inference: the answer is "true" iff logit(true) > logit(false) at the last decoder step."""
    true_id, false_id = _first_token(tokenizer, "true"), _first_token(tokenizer, "false")
    if true_id == false_id:
        raise ValueError(f"nlvr2: 'true' and 'false' share their first sub-token id {true_id}")
    dec = nlvr2_decoder_input_ids(model, tokenizer, len(batch), batch.input_ids.device)
    logits = model(batch.input_ids, batch.vis_feats, batch.attention_mask, decoder_input_ids=dec,
                   vis_attention_mask=batch.vis_attention_mask)["logits"][:, -1]
    is_true = logits[:, true_id] > logits[:, false_id]
    return ["true" if t else "false" for t in is_true.tolist()]


def predict_batch(model: Any, tokenizer: Any, batch: VLBatch, overrides: Mapping[str, Any] | None = None
                  ) -> list[str]:
    """Predictions (one string per example, in batch order) for one single-task batch.

    Generated ids are decoded with ``skip_special_tokens=True`` and stripped (BART outputs start ``</s> <s>``).
    ``overrides`` are extra/replacement ``generate`` kwargs (ignored for NLVR2, which is not generated).
    """
    if batch.task in LOGIT_TASKS:
        return _predict_nlvr2(model, tokenizer, batch)
    kwargs = generation_kwargs(model, batch.task, overrides)
    out = model.generate(batch.input_ids, batch.vis_feats, batch.attention_mask,
                         vis_attention_mask=batch.vis_attention_mask, **kwargs)
    if out.shape[0] != len(batch):
        raise ValueError(f"task {batch.task}: generate returned {out.shape[0]} sequences for {len(batch)} examples "
                         f"(num_return_sequences must be 1)")
    return [text.strip() for text in tokenizer.batch_decode(out, skip_special_tokens=True)]


def predict(model: Any, tokenizer: Any, batches: Iterable[VLBatch], device: torch.device | str = "cpu",
            overrides: Mapping[str, Any] | None = None, progress: bool = False) -> dict[str, str]:
    """``{example_id: prediction}`` over ``batches`` (may mix tasks), in eval mode under ``inference_mode``.

    Leaves the model in the train/eval mode it had. Duplicate or empty example ids are errors, since they would
    silently overwrite predictions.
    """
    iterator: Iterable[VLBatch] = batches
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(batches, desc="predict", unit="batch")
    was_training = model.training
    model.eval()
    preds: dict[str, str] = {}
    try:
        with torch.inference_mode():
            for batch in iterator:
                ids = batch.example_ids
                if len(ids) != len(batch):
                    raise ValueError(f"task {batch.task}: batch has {len(batch)} examples but {len(ids)} example_ids")
                texts = predict_batch(model, tokenizer, batch.to(device), overrides)
                for eid, text in zip(ids, texts, strict=True):
                    if not eid:
                        raise ValueError(f"task {batch.task}: an example has an empty example_id")
                    if eid in preds:
                        raise ValueError(f"task {batch.task}: duplicate example_id {eid!r}")
                    preds[eid] = text
    finally:
        model.train(was_training)
    return preds
