"""Agent evaluations kept in the run store: every finished trial as it ends, the run with its figures.

`evaluate_agents` finds the trials a config already finished on the same task set (config key
and task-set fingerprint) and never reruns them; the rest run through the LangGraph graphs
with a SQLite checkpointer beside the run store (`<store>.agents.sqlite`), so a trial cut off
mid-loop resumes from its last step. Trials that failed with an error are not kept as
finished: the next run tries them again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..agents import AgentConfig, AgentReport, Environment, TrialResult, load_environment, run_agents
from ..agents.runner import Approver
from ..store import RunStore

if TYPE_CHECKING:
    import pandas as pd

    from ..agents import AgentModel

__all__ = ["evaluate_agents", "agent_runs", "load_agent_report", "checkpoint_path", "task_set_fingerprint",
           "trial_checkpoints"]


def checkpoint_path(store_path: str | Path) -> Path:
    """The LangGraph checkpoint file beside a run store (`runs.sqlite` -> `runs.agents.sqlite`)."""
    path = Path(store_path)
    return path.with_name(f"{path.stem}.agents.sqlite")


def task_set_fingerprint(env: Environment) -> str:
    """A hash of the environment's tasks (ids, instructions, start and goal states)."""
    blob = json.dumps([[t.id, t.instruction, t.start, t.goal] for t in env.tasks], sort_keys=True, default=str)
    return hashlib.sha256(f"{env.name}\n{blob}".encode()).hexdigest()[:16]


def _finished(store: RunStore, key: str) -> dict[tuple[str, int], TrialResult]:
    rows = store.db.read("SELECT task_id, trial, result FROM agent_trials WHERE config_key = ?", (key,))
    return {(task, trial): TrialResult.from_dict(json.loads(raw)) for task, trial, raw in rows}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _save_trial(store: RunStore, key: str, trial: TrialResult) -> None:
    if trial.status == "error":  # not finished: the next run tries it again
        return
    row = (key, trial.task_id, trial.trial, trial.status, int(trial.success),
           json.dumps(trial.to_dict(), sort_keys=True, default=str), _now())
    store.db.transact("save an agent trial",
                      lambda conn: conn.execute("INSERT OR REPLACE INTO agent_trials VALUES (?, ?, ?, ?, ?, ?, ?)", row))


def evaluate_agents(
    config: AgentConfig, env: Environment | None = None, *, store: RunStore | str | Path | None = None,
    model: AgentModel | None = None, ask: Approver | None = None,
    progress: Callable[[TrialResult], None] | None = None,
) -> AgentReport:
    """Run `config` (reusing finished trials), store its trials and the run, and return the report.

    Args:
        config: what to run.
        env: the environment (default: `load_environment(config.env)`, the bundled tasks).
        store: the run store (default `RunStore.default()`).
        model: one model for every task (default: built from `config.model` per task).
        ask: the reviewer for approval="ask".
        progress: called with each trial that ran now.

    Returns:
        The report, its `run_id` set to the stored run.
    """
    from langgraph.checkpoint.sqlite import SqliteSaver

    env = env or load_environment(config.env)
    store = store if isinstance(store, RunStore) else RunStore(store) if store is not None else RunStore.default()
    fingerprint = task_set_fingerprint(env)
    key = f"{config.key()}-{fingerprint}"
    conn = sqlite3.connect(checkpoint_path(store.path), check_same_thread=False)
    try:
        def keep(trial: TrialResult) -> None:
            _save_trial(store, key, trial)
            if progress is not None:
                progress(trial)

        report = run_agents(env, config, model=model, checkpointer=SqliteSaver(conn), done=_finished(store, key),
                            ask=ask, on_trial=keep, key=key)
    finally:
        conn.close()
    run_id = uuid.uuid4().hex[:12]
    row = (run_id, key, json.dumps(dataclasses.asdict(config), sort_keys=True), fingerprint,
           json.dumps(report.summary(), sort_keys=True), _now())
    store.db.transact("save an agent run",
                      lambda conn: conn.execute("INSERT INTO agent_runs VALUES (?, ?, ?, ?, ?, ?)", row))
    return dataclasses.replace(report, run_id=run_id)


def agent_runs(store: RunStore | str | Path | None = None) -> pd.DataFrame:
    """Stored agent runs, newest first: id, env, pattern, model, trials and the summary figures."""
    import pandas as pd

    store = store if isinstance(store, RunStore) else RunStore(store) if store is not None else RunStore.default()
    rows = store.db.read("SELECT id, config, task_set, summary, created_at FROM agent_runs ORDER BY created_at DESC")
    records: list[dict[str, Any]] = []
    for run_id, config, task_set, summary, created in rows:
        c = json.loads(config)
        records.append({"run_id": run_id, "created_at": created, "env": c["env"], "pattern": c["pattern"],
                        "model": c["model"], "trials_per_task": c["trials"], "task_set": task_set, **json.loads(summary)})
    return pd.DataFrame(records)


def load_agent_report(run_id: str, store: RunStore | str | Path | None = None) -> AgentReport:
    """A stored run's report, its trials read back.

    Raises:
        KeyError: no agent run with that id (the message says how to list them).
    """
    store = store if isinstance(store, RunStore) else RunStore(store) if store is not None else RunStore.default()
    rows = store.db.read("SELECT config_key, config FROM agent_runs WHERE id = ?", (run_id,))
    if not rows:
        raise KeyError(f"no agent run {run_id!r} in {str(store.path)!r}; list them with agent_runs()")
    key, raw = rows[0]
    config_dict = json.loads(raw)
    config = AgentConfig(**{**config_dict, "tasks": tuple(config_dict["tasks"])})
    done = _finished(store, key)
    trials = tuple(sorted(done.values(), key=lambda t: (t.task_id, t.trial)))
    return AgentReport(config=config, trials=trials, run_id=run_id)


def trial_checkpoints(config: AgentConfig, task_id: str, trial: int = 0, env: Environment | None = None, *,
                      store: RunStore | str | Path | None = None) -> pd.DataFrame:
    """A trial's LangGraph checkpoints, oldest first: the step, the nodes due next, status, model calls, tool calls.

    Raises:
        KeyError: no checkpoint for that trial (it never ran with this config and task set).
    """
    import pandas as pd
    from langgraph.checkpoint.sqlite import SqliteSaver

    from ..agents import build_graph, make_model

    env = env or load_environment(config.env)
    store = store if isinstance(store, RunStore) else RunStore(store) if store is not None else RunStore.default()
    thread = f"{config.key()}-{task_set_fingerprint(env)}:{task_id}:{trial}"
    task = env.task(task_id)
    conn = sqlite3.connect(checkpoint_path(store.path), check_same_thread=False)
    try:
        graph = build_graph(config.pattern, env, task, make_model("scripted", task), max_steps=config.max_steps,
                            checkpointer=SqliteSaver(conn))  # the model is never called: history only
        history = list(graph.get_state_history({"configurable": {"thread_id": thread}}))
    finally:
        conn.close()
    if not history:
        raise KeyError(f"no checkpoints for {task_id!r} trial {trial} of this config in {str(checkpoint_path(store.path))!r}")
    return pd.DataFrame([{
        "step": snap.metadata.get("step"), "next": ",".join(snap.next), "status": snap.values.get("status", ""),
        "llm_calls": snap.values.get("llm_calls", 0),
        "tool_calls": sum(1 for e in snap.values.get("events", ()) if e["kind"] == "tool"),
    } for snap in reversed(history)])
