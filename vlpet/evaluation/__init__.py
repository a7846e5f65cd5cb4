"""Evaluation of VL-PET models: task-specific prediction as the official code does it, task scores with a
majority-answer baseline, and the run report (loss curve PNG + Markdown).

Public API:
- ``GENERATION``, ``LOGIT_TASKS``, ``generation_kwargs``, ``predict_batch``, ``predict``, ``choice_index``;
- ``EvalExample``, ``TASK_METRIC``, ``score_task``, ``majority_prediction``, ``majority_baseline``;
- ``loss_curve_png``, ``markdown_report``, ``write_text_atomic``.
"""

from vlpet.evaluation.generation import (
    DEFAULT_MAX_LENGTH,
    GENERATION,
    LOGIT_TASKS,
    choice_index,
    generation_kwargs,
    nlvr2_decoder_input_ids,
    predict,
    predict_batch,
)
from vlpet.evaluation.report import loss_curve_png, markdown_report, write_text_atomic
from vlpet.evaluation.scoring import (
    TASK_METRIC,
    EvalExample,
    majority_baseline,
    majority_prediction,
    prediction_spread,
    score_task,
)

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "GENERATION",
    "LOGIT_TASKS",
    "TASK_METRIC",
    "EvalExample",
    "choice_index",
    "generation_kwargs",
    "loss_curve_png",
    "majority_baseline",
    "majority_prediction",
    "markdown_report",
    "nlvr2_decoder_input_ids",
    "predict",
    "predict_batch",
    "prediction_spread",
    "score_task",
    "write_text_atomic",
]
