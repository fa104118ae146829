"""The task table: `TASKS`, recipe `task:` name -> Task (compress/tasks/base.py says what a task is).

Each task is one module here that calls `register_task` at import; `TASK_MODULES` lists them, so adding
a task is one module plus one line below.
"""

from __future__ import annotations

import importlib

from compress.tasks.base import STAGES, TASKS, Output, Section, Task, register_task, section_enabled

TASK_MODULES = ("compress.tasks.image_classification", "compress.tasks.causal_lm",
                "compress.tasks.text_classification")


def load_tasks() -> dict[str, Task]:
    for name in TASK_MODULES:
        importlib.import_module(name)
    return TASKS


def get_task(name: str) -> Task:
    tasks = load_tasks()
    try:
        return tasks[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; registered tasks: {sorted(tasks)}") from None


__all__ = ["STAGES", "TASKS", "TASK_MODULES", "Output", "Section", "Task", "get_task", "load_tasks",
           "register_task", "section_enabled"]
