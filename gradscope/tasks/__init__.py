"""Tasks, registered by name (``--task``). A new task is one module here and one line in TASKS."""

from __future__ import annotations

from ..errors import InputError
from .adding import AddingTask
from .base import Batch, Task, TaskShape
from .copy import CopyTask
from .random import RandomTask
from .temporal_order import TemporalOrderTask
from .text import TextTask

TASKS: dict[str, type[Task]] = {
    RandomTask.name: RandomTask,
    AddingTask.name: AddingTask,
    TemporalOrderTask.name: TemporalOrderTask,
    CopyTask.name: CopyTask,
    TextTask.name: TextTask,
}


def make_task(name: str, config=None) -> Task:
    """The task registered as ``name``, with its own options read from ``config`` (a RunConfig).

    Unknown names are input errors.
    """
    try:
        cls = TASKS[name]
    except KeyError:
        raise InputError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None
    return cls() if config is None else cls.from_config(config)


__all__ = ["TASKS", "Batch", "Task", "TaskShape", "make_task"]
