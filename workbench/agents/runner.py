"""Running agents: one trial of one task through a pattern's graph, then every task x trial, with metrics.

A trial is a LangGraph thread (`<run key>:<task>:<trial>`) in the checkpointer: a finished
thread is read back instead of run again, and an interrupted one resumes from its last
checkpoint. An approval interrupt is answered by the run's policy. A trial that raises (an API
fault after its retries, a bug) is recorded as status "error" with the message, and the other
trials go on. `evaluation.agents` stores reports in the run store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..tracing import spans as tracing
from .metrics import (
    invalid_call_rate,
    mean_pass_at_k,
    mean_pass_hat_k,
    percentile,
    tool_call_accuracy,
    trajectory_match,
)
from .models import AgentModel, LocalAgentModel, ScriptedModel
from .patterns import PATTERNS, build_graph, initial_state
from .tasks import Environment, Task
from .tools import ToolCall

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "APPROVAL_POLICIES", "ENVIRONMENTS", "AgentConfig", "TrialResult", "AgentReport", "Approver", "make_model",
    "run_trial", "run_agents", "compare_reports",
]

ApprovalPolicy = Literal["off", "approve_all", "deny_all", "ask"]
APPROVAL_POLICIES: tuple[str, ...] = ("off", "approve_all", "deny_all", "ask")
ENVIRONMENTS: tuple[str, ...] = ("diagram", "documents")
Approver = Callable[[Mapping[str, Any]], bool]  # shown the interrupt's {"tool", "arguments"}; True approves
INVALID_KINDS = frozenset({"unknown_tool", "invalid_arguments"})


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """One agent evaluation: environment, pattern, model, trials and limits.

    Args:
        env: "diagram" or "documents".
        pattern: one of `patterns.PATTERNS`.
        model: "scripted" (replays each task's reference), "local" (the packaged Gemma) or a
            Claude model id from the price table.
        trials: runs per task (pass^k uses k = trials).
        max_steps: model calls per trial before it stops with status `step_limit`.
        approval: destructive tools "off" (no review), or reviewed with "approve_all",
            "deny_all" or "ask" (a reviewer answers each).
        tasks: task ids to run (empty: all); `limit` keeps the first N of them (0: all).
        temperature: sampling temperature of the local model (0: greedy, so trials agree).
        base_url: the Messages API endpoint for Claude ("" : the SDK's default).
    """

    env: str = "diagram"
    pattern: str = "react"
    model: str = "scripted"
    trials: int = 1
    max_steps: int = 40
    approval: ApprovalPolicy = "approve_all"
    tasks: tuple[str, ...] = ()
    limit: int = 0
    temperature: float = 0.0
    base_url: str = ""

    def __post_init__(self) -> None:
        if self.env not in ENVIRONMENTS:
            raise ValueError(f"unknown environment {self.env!r}; choose one of {list(ENVIRONMENTS)}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown agent pattern {self.pattern!r}; choose one of {list(PATTERNS)}")
        if self.approval not in APPROVAL_POLICIES:
            raise ValueError(f"unknown approval policy {self.approval!r}; choose one of {list(APPROVAL_POLICIES)}")
        if self.trials < 1 or self.max_steps < 1 or self.limit < 0:
            raise ValueError(f"trials={self.trials} and max_steps={self.max_steps} must be >= 1 and "
                             f"limit={self.limit} >= 0")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature={self.temperature} must be between 0 and 2")

    def key(self) -> str:
        """A content hash of the config (what a stored report and its checkpoints are found by)."""
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def select(self, tasks: Sequence[Task]) -> tuple[Task, ...]:
        """The tasks this config runs.

        Raises:
            KeyError: a requested task id does not exist.
        """
        known = {t.id: t for t in tasks}
        missing = [t for t in self.tasks if t not in known]
        if missing:
            raise KeyError(f"unknown task ids {missing[:5]}; ids are like {list(known)[:5]}")
        chosen = [known[t] for t in self.tasks] if self.tasks else list(tasks)
        return tuple(chosen[: self.limit] if self.limit else chosen)


@dataclass(frozen=True, kw_only=True)
class TrialResult:
    """One trial of one task: how it ended, whether it succeeded, and every model turn and tool call."""

    task_id: str
    trial: int
    status: str  # "done", "step_limit" or "error"
    success: bool
    answer: str
    final_state: Any
    events: tuple[Mapping[str, Any], ...]
    latency_s: float
    error: str = ""
    tool_call_accuracy: float = 0.0
    trajectory: Mapping[str, bool] = field(default_factory=dict)

    def _llm(self) -> list[Mapping[str, Any]]:
        return [e for e in self.events if e["kind"] == "llm"]

    @property
    def calls(self) -> tuple[ToolCall, ...]:
        """The tool calls made, in order."""
        return tuple(ToolCall(id="", name=e["name"], arguments=e["arguments"]) for e in self.events if e["kind"] == "tool")

    @property
    def llm_calls(self) -> int:
        return len(self._llm())

    @property
    def invalid_calls(self) -> int:
        """Malformed model output plus calls of unknown tools or with arguments failing the schema."""
        return (sum(1 for e in self._llm() if e["invalid"])
                + sum(1 for e in self.events if e["kind"] == "tool" and e["error"] in INVALID_KINDS))

    @property
    def attempted_calls(self) -> int:
        """Tool calls made plus model turns whose output was not a call at all."""
        return len(self.calls) + sum(1 for e in self._llm() if e["invalid"])

    def total(self, key: str) -> float:
        """The sum of one usage field over the model turns ("input_tokens", "cost_usd", ...)."""
        return float(sum(e.get(key) or 0 for e in self._llm()))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"events": [dict(e) for e in self.events]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialResult:
        return cls(**{**data, "events": tuple(data["events"])})


def _summary(trials: Sequence[TrialResult], k: int) -> dict[str, float]:
    outcomes: dict[str, list[bool]] = {}
    for t in trials:
        outcomes.setdefault(t.task_id, []).append(t.success)
    latencies = [t.latency_s for t in trials]
    ttfts = [e["ttft_s"] for t in trials for e in t._llm() if e.get("ttft_s") is not None]
    solved = sum(t.success for t in trials)
    cost = sum(t.total("cost_usd") for t in trials)
    return {
        "tasks": float(len(outcomes)),
        "trials": float(len(trials)),
        "success_rate": float(np.mean([t.success for t in trials])),
        "pass_hat_k": mean_pass_hat_k(outcomes, k),
        "pass_at_k": mean_pass_at_k(outcomes, k),
        "k": float(k),
        "tool_call_accuracy": float(np.mean([t.tool_call_accuracy for t in trials])),
        "invalid_call_rate": invalid_call_rate(sum(t.invalid_calls for t in trials),
                                               sum(t.attempted_calls for t in trials)),
        "mean_steps": float(np.mean([t.llm_calls for t in trials])),
        "mean_tool_calls": float(np.mean([len(t.calls) for t in trials])),
        "input_tokens_per_task": float(np.mean([t.total("input_tokens") for t in trials])),
        "output_tokens_per_task": float(np.mean([t.total("output_tokens") for t in trials])),
        "cost_per_task_usd": cost / len(trials),
        "cost_per_solved_task_usd": cost / solved if solved else float("nan"),
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "ttft_p50_s": percentile(ttfts, 50),
        "step_limit_rate": float(np.mean([t.status == "step_limit" for t in trials])),
        "error_rate": float(np.mean([t.status == "error" for t in trials])),
        **{f"trajectory_{mode}": float(np.mean([t.trajectory.get(mode, False) for t in trials]))
           for mode in ("strict", "unordered", "subset", "superset")},
    }


@dataclass(frozen=True, kw_only=True)
class AgentReport:
    """Every trial of one `AgentConfig`, and the figures over them (`summary`)."""

    config: AgentConfig
    trials: tuple[TrialResult, ...]
    run_id: str = ""

    def summary(self) -> dict[str, float]:
        """success_rate, pass_hat_k (k = trials), tool_call_accuracy, invalid_call_rate, mean_steps,
        tokens, cost_per_task_usd, p50_s / p95_s per trial and more, snake_case.

        Raises:
            ValueError: the report has no trials.
        """
        if not self.trials:
            raise ValueError("the report has no trials; run at least one task")
        return _summary(self.trials, self.config.trials)

    def per_task_success(self) -> dict[str, float]:
        """Task id -> share of its trials that succeeded (for paired comparisons)."""
        out: dict[str, list[bool]] = {}
        for t in self.trials:
            out.setdefault(t.task_id, []).append(t.success)
        return {task: float(np.mean(v)) for task, v in out.items()}

    def to_frame(self) -> pd.DataFrame:
        """One row per trial."""
        import pandas as pd

        return pd.DataFrame([{
            "task_id": t.task_id, "trial": t.trial, "status": t.status, "success": t.success,
            "llm_calls": t.llm_calls, "tool_calls": len(t.calls), "invalid_calls": t.invalid_calls,
            "tool_call_accuracy": t.tool_call_accuracy, "input_tokens": t.total("input_tokens"),
            "output_tokens": t.total("output_tokens"), "cost_usd": t.total("cost_usd"), "latency_s": t.latency_s,
            "error": t.error,
        } for t in self.trials])


def compare_reports(a: AgentReport, b: AgentReport, *, seed: int = 0) -> Any:
    """Paired comparison of per-task success (b minus a) over the tasks both ran (`stats.compare_paired`).

    Raises:
        ValueError: the reports share no tasks or cover different tasks.
    """
    from ..stats import compare_paired

    return compare_paired(a.per_task_success(), b.per_task_success(), metric="success", seed=seed)


def make_model(name: str, task: Task, *, temperature: float = 0.0, base_url: str = "", example: str = "") -> AgentModel:
    """The model `name` stands for, for one task ("scripted" replays that task's reference).

    Raises:
        ValueError: a name that is none of "scripted", "local", a .gguf path or a claude-* id.
    """
    if name == "scripted":
        return ScriptedModel(task.reference, answer=task.reference_answer, baseline_answer=task.reference_baseline)
    if name == "local" or name.endswith(".gguf"):
        return _local(None if name == "local" else name, temperature, example)
    if name.startswith("claude"):
        return _claude(name, base_url)
    raise ValueError(f"unknown agent model {name!r}; use 'scripted', 'local', a .gguf path or a Claude model id")


_MODELS: dict[tuple[Any, ...], AgentModel] = {}


def _local(path: str | None, temperature: float, example: str) -> AgentModel:
    key = ("local", path, temperature, example)
    if key not in _MODELS:
        _MODELS[key] = LocalAgentModel(model_path=path, temperature=temperature, example=example)
    return _MODELS[key]


def _claude(model: str, base_url: str) -> AgentModel:
    from .claude import ClaudeAgentModel

    key = ("claude", model, base_url)
    if key not in _MODELS:
        _MODELS[key] = ClaudeAgentModel(model, base_url=base_url or None)
    return _MODELS[key]


def _approver(policy: str, ask: Approver | None) -> Approver:
    if policy in ("approve_all", "off"):  # with "off" nothing is ever asked
        return lambda request: True
    if policy == "deny_all":
        return lambda request: False
    if ask is None:
        raise ValueError("approval='ask' needs an `ask` callback that approves or denies each request")
    return ask


def _finish(env: Environment, task: Task, trial: int, values: Mapping[str, Any], started: float,
            status: str, error: str) -> TrialResult:
    world = values.get("world", task.start)
    answer = values.get("answer", "")
    events = tuple(values.get("events", ()))
    made = [ToolCall(id="", name=e["name"], arguments=e["arguments"]) for e in events if e["kind"] == "tool"]
    success = status != "error" and bool(env.check(task, world, answer))
    rules = env.argument_rules
    return TrialResult(
        task_id=task.id, trial=trial, status=status, success=success, answer=answer, final_state=world,
        events=events, latency_s=time.perf_counter() - started, error=error,
        tool_call_accuracy=tool_call_accuracy(made, task.reference, rules),
        trajectory={m: trajectory_match(made, task.reference, m, rules) for m in ("strict", "unordered", "subset", "superset")},
    )


def run_trial(
    env: Environment, task: Task, config: AgentConfig, model: AgentModel, *, trial: int = 0,
    checkpointer: Any = None, thread_id: str | None = None, ask: Approver | None = None,
) -> TrialResult:
    """Run (or resume, or read back) one trial of `task`; never raises for the model's or the API's faults.

    Args:
        env: the environment.
        task: the task.
        config: pattern, limits and approval policy.
        model: what answers the model nodes.
        trial: the trial number (also the sampling seed).
        checkpointer: a LangGraph checkpointer (default: in memory, this trial only).
        thread_id: the trial's thread in the checkpointer (default `<config key>:<task>:<trial>`).
        ask: the reviewer for approval="ask".
    """
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.errors import GraphRecursionError
    from langgraph.types import Command

    approve = _approver(config.approval, ask)
    graph = build_graph(config.pattern, env, task, model, max_steps=config.max_steps, seed=trial,
                        require_approval=config.approval != "off", checkpointer=checkpointer or InMemorySaver())
    run = {"configurable": {"thread_id": thread_id or f"{config.key()}:{task.id}:{trial}"},
           "recursion_limit": 4 * config.max_steps + 20}
    started = time.perf_counter()
    status, error = "done", ""
    with tracing.stage("agent", task=task.id, pattern=config.pattern, model=config.model, trial=trial) as span:
        try:
            snapshot = graph.get_state(run)
            payload: Any = None if snapshot.next else initial_state(env, task)
            while not (snapshot.values and not snapshot.next):  # a finished thread is read back, not rerun
                graph.invoke(payload, run)
                snapshot = graph.get_state(run)
                waiting = [i for t in snapshot.tasks for i in t.interrupts]
                if not waiting:
                    break
                payload = Command(resume=bool(approve(waiting[0].value)))
            status = snapshot.values.get("status", "done")
        except GraphRecursionError:
            status = "step_limit"
        except Exception as exc:  # the task fails with its error; the other tasks go on
            status, error = "error", f"{type(exc).__name__}: {exc}"
        values = graph.get_state(run).values
        result = _finish(env, task, trial, values, started, status, error)
        span.record(status=result.status, success=result.success, llm_calls=result.llm_calls,
                    tool_calls=len(result.calls), invalid_calls=result.invalid_calls,
                    tool_call_accuracy=result.tool_call_accuracy, error=error)
    return result


def run_agents(
    env: Environment, config: AgentConfig, *, model: AgentModel | None = None, checkpointer: Any = None,
    done: Mapping[tuple[str, int], TrialResult] | None = None, ask: Approver | None = None,
    on_trial: Callable[[TrialResult], None] | None = None, key: str | None = None,
) -> AgentReport:
    """Every selected task x trial of `config` (trials in `done` are reused, not rerun).

    Args:
        env: the environment.
        config: what to run.
        model: the model for every task (default: `make_model(config.model, task)` per task).
        checkpointer: a LangGraph checkpointer shared by every trial.
        done: finished trials by (task id, trial), e.g. read back from the store.
        ask: the reviewer for approval="ask".
        on_trial: called with each trial as it finishes (progress, incremental saving).
        key: the checkpoint threads' prefix (default `config.key()`).
    """
    done = done or {}
    results = []
    for task in config.select(env.tasks):
        for trial in range(config.trials):
            if (task.id, trial) in done:
                results.append(done[(task.id, trial)])
                continue
            agent = model or make_model(config.model, task, temperature=config.temperature, base_url=config.base_url,
                                        example=env.example)
            result = run_trial(env, task, config, agent, trial=trial, checkpointer=checkpointer, ask=ask,
                               thread_id=f"{key or config.key()}:{task.id}:{trial}")
            results.append(result)
            if on_trial is not None:
                on_trial(result)
    return AgentReport(config=config, trials=tuple(results))
