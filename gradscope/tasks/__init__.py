"""Tasks, registered by name (``--task``). A new task is one module here and one line in TASKS."""

from __future__ import annotations

from ..errors import InputError
from .adding import AddingTask
from .base import Batch, Task, TaskShape
from .random import RandomTask

TASKS: dict[str, type[Task]] = {
    RandomTask.name: RandomTask,
    AddingTask.name: AddingTask,
}


def make_task(name: str) -> Task:
    """An instance of the task registered as ``name``; unknown names are input errors."""
    try:
        return TASKS[name]()
    except KeyError:
        raise InputError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None


__all__ = ["TASKS", "Batch", "Task", "TaskShape", "make_task"]
