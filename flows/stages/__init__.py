"""The pipeline's stages, one module each, and the one executor that caches, records and runs them
(``flows.stages.core``). Prefect-free: the CLI, the Prefect tasks and the tests all call ``execute``."""

from flows.stages.core import Artifact, Ref, Stage, StageContext, StageOutput, StageParams, execute, plan

__all__ = ["Artifact", "Ref", "Stage", "StageContext", "StageOutput", "StageParams", "execute", "plan"]
