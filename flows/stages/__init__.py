"""The pipeline's stages, one module each, and the one executor that caches, records and runs them
(``flows.stages.core``). Prefect-free: the CLI, the Prefect tasks and the tests all call ``execute``."""

from flows.stages.build import BUILD, run_build, task_splits
from flows.stages.core import Artifact, Ref, Stage, StageContext, StageOutput, StageParams, execute, plan
from flows.stages.download import DOWNLOAD, run_download
from flows.stages.evaluate import EVALUATE, run_evaluate
from flows.stages.extract import EXTRACT, run_extract
from flows.stages.prepare import PREPARE, run_prepare
from flows.stages.report import REPORT, run_report
from flows.stages.synthesize import SYNTHESIZE, run_synthesize
from flows.stages.train import TRAIN, run_train

STAGES: dict[str, Stage] = {s.name: s for s in (SYNTHESIZE, DOWNLOAD, PREPARE, EXTRACT, BUILD, TRAIN, EVALUATE,
                                                REPORT)}

__all__ = ["BUILD", "DOWNLOAD", "EVALUATE", "EXTRACT", "PREPARE", "REPORT", "STAGES", "SYNTHESIZE", "TRAIN",
           "Artifact", "Ref", "Stage", "StageContext", "StageOutput", "StageParams", "execute", "plan", "run_build",
           "run_download", "run_evaluate", "run_extract", "run_prepare", "run_report", "run_synthesize", "run_train",
           "task_splits"]
