"""The orchestration layer: tool-calling agents on LangGraph, measured by what they get done.

- `tools`: a tool is a name, a description, a JSON input schema and a pure function; calls are
  validated before they run and failures come back to the model as error results.
- `diagram`, `documents`: environments with checkable tasks (the bundled diagram task set;
  any dataset's questions through the retrieval pipeline).
- `patterns`: the tool loop, ReAct with a step limit, plan-and-execute and the one-call
  baseline as LangGraph graphs, checkpointed, with approval interrupts for destructive tools.
- `models`, `claude`: the scripted model, the local Gemma under a JSON grammar, and Claude with
  native tool use and prompt caching.
- `metrics`: pass^k, pass@k, tool-call accuracy, trajectory match (pure functions).
- `runner`: trials, approval policies, reports and paired comparisons.
"""

from __future__ import annotations

from .diagram import DIAGRAM_SCHEMA, diagram_environment, load_diagram_tasks, same_diagram, validate_diagram
from .metrics import (
    arguments_match,
    call_matches,
    invalid_call_rate,
    mean_pass_at_k,
    mean_pass_hat_k,
    pass_at_k,
    pass_hat_k,
    tool_call_accuracy,
    tool_name_accuracy,
    trajectory_match,
)
from .models import AgentModel, AgentModelError, LocalAgentModel, ModelRequest, ModelTurn, ScriptedModel
from .patterns import PATTERNS, build_graph
from .runner import (
    APPROVAL_POLICIES,
    ENVIRONMENTS,
    AgentConfig,
    AgentReport,
    TrialResult,
    compare_reports,
    make_model,
    run_agents,
    run_trial,
)
from .tasks import Environment, Task, TaskFileError
from .tools import Tool, ToolCall, ToolError, ToolResult, run_tool

__all__ = [
    "Tool", "ToolCall", "ToolResult", "ToolError", "run_tool",
    "Task", "Environment", "TaskFileError",
    "DIAGRAM_SCHEMA", "diagram_environment", "load_diagram_tasks", "same_diagram", "validate_diagram",
    "load_environment",
    "AgentModel", "AgentModelError", "ModelRequest", "ModelTurn", "ScriptedModel", "LocalAgentModel",
    "PATTERNS", "build_graph",
    "APPROVAL_POLICIES", "ENVIRONMENTS", "AgentConfig", "AgentReport", "TrialResult", "compare_reports",
    "make_model", "run_agents", "run_trial",
    "pass_hat_k", "pass_at_k", "mean_pass_hat_k", "mean_pass_at_k", "arguments_match", "call_matches",
    "tool_call_accuracy", "tool_name_accuracy", "trajectory_match", "invalid_call_rate",
]


def load_environment(name: str, **options: object) -> Environment:
    """The environment `name` ("diagram": `task_file=`; "documents": `dataset=`, `config=`).

    Raises:
        ValueError: an unknown environment name.
    """
    if name == "diagram":
        return diagram_environment(options.get("task_file"))  # type: ignore[arg-type]
    if name == "documents":
        from .documents import documents_environment

        return documents_environment(**options)  # type: ignore[arg-type]
    raise ValueError(f"unknown environment {name!r}; choose one of {list(ENVIRONMENTS)}")
