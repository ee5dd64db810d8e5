"""Tasks and environments: what an agent is asked to do, with which tools, and how success is checked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .tools import Tool, ToolCall

__all__ = ["Task", "Environment", "TaskFileError"]


class TaskFileError(ValueError):
    """A task file is missing or malformed; the message names the line and the fix."""


@dataclass(frozen=True, kw_only=True)
class Task:
    """One checkable task.

    `start` is the environment's state at the beginning, `goal` what success is judged against
    (a diagram, or the relevant documents' spans), `reference` a call sequence that solves it,
    `reference_answer` the final text of that solution and `reference_baseline` a correct reply
    to the one-call baseline (no tools).
    """

    id: str
    instruction: str
    start: Any
    goal: Any
    reference: tuple[ToolCall, ...] = ()
    reference_answer: str = "Done."
    reference_baseline: str = ""
    difficulty: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Environment:
    """A set of tools over one kind of state, its tasks and its success check.

    Args:
        name: "diagram" or "documents".
        tools: the tools the agent may call.
        system: the system prompt (the static prefix, cached with the tools).
        tasks: the tasks of this environment.
        check: `check(task, final_state, answer_text) -> bool`, success judged on the outcome.
        baseline_schema: the JSON schema of the one-call baseline's answer (no tools).
        from_baseline: the final state a baseline answer (parsed JSON or None) stands for.
        show: the state as text for a prompt ("" shows nothing).
        argument_rules: tool name -> how its arguments are judged by tool-call accuracy
            ("exact", the default, "subset" or "name_only").
        example: a worked transcript for base models' completion prompts (few-shot).
    """

    name: str
    tools: tuple[Tool, ...]
    system: str
    tasks: tuple[Task, ...]
    check: Callable[[Task, Any, str], bool] = field(repr=False)
    baseline_schema: Mapping[str, Any] = field(repr=False)
    from_baseline: Callable[[Task, Any], Any] = field(repr=False)
    show: Callable[[Any], str] = field(repr=False, default=lambda state: "")
    argument_rules: Mapping[str, str] = field(default_factory=dict)
    example: str = ""

    @property
    def tool_map(self) -> dict[str, Tool]:
        return {tool.name: tool for tool in self.tools}

    def task(self, task_id: str) -> Task:
        """The task with this id.

        Raises:
            KeyError: no such task (the message lists a few ids).
        """
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(f"no task {task_id!r} in {self.name}; ids are like {[t.id for t in self.tasks[:5]]}")
