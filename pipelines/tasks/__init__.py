"""Task tables (unified table ⋈ feature snapshot) and the memory-mapped multi-task loader.

Public API: ``build_task`` (standard layout), ``build_task_table``, ``BuildReport``,
``open_task_table``, ``task_table_metadata``, ``TaskDataset``, ``MultiTaskDataset``,
``ConcatTaskDataset``, ``MultiTaskBatchSampler``, ``MultiTaskCollator``, ``multitask_loader``.
"""

from pipelines.tasks.build import (
    TASKS,
    BuildReport,
    build_task,
    build_task_table,
    open_task_table,
    task_table_metadata,
    write_report,
)
from pipelines.tasks.loader import (
    ConcatTaskDataset,
    MultiTaskBatchSampler,
    MultiTaskCollator,
    MultiTaskDataset,
    TaskDataset,
    multitask_loader,
)

__all__ = [
    "TASKS",
    "BuildReport",
    "ConcatTaskDataset",
    "MultiTaskBatchSampler",
    "MultiTaskCollator",
    "MultiTaskDataset",
    "TaskDataset",
    "build_task",
    "build_task_table",
    "multitask_loader",
    "open_task_table",
    "task_table_metadata",
    "write_report",
]
