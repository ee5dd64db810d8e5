"""Agents on the bundled diagram tasks: each pattern x offline model, and LangGraph's cost per step.

Quality: for each pattern (tool_loop, react, plan_execute, baseline) and offline model
(the scripted reference over every task; the local Gemma 3 270M over the first `--local-tasks`
tasks of each difficulty) it prints success rate, pass^k (k = trials), tool-call accuracy,
invalid-call rate, mean model calls, tokens and estimated cost per task, and p50/p95 seconds
per task. The estimated cost prices the local model's own token counts at `--price-model`'s
rates (Gemma's tokenizer is not Claude's: an estimate, labelled as such); the scripted model
sends no tokens. Gemma samples at `--temperature` with the trial number as seed, so its
trials differ.

Overhead: the same scripted model and tools through the LangGraph ReAct graph (no
checkpointer, in-memory, SQLite) against a plain Python loop doing the same turns, over every
task, `--rounds` times interleaved: microseconds per model call added, and the time ratio.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/agents.py [--trials 3] [--local-tasks 2] [--local-steps 8]
        [--local-patterns react,plan_execute,baseline] [--rounds 5] [--skip-local] [--only quality|overhead]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from workbench.agents import AgentConfig, ScriptedModel, diagram_environment, run_agents, run_tool
from workbench.agents.models import ModelRequest
from workbench.agents.patterns import initial_state
from workbench.prices import load_prices, price_of

PATTERNS = ("tool_loop", "react", "plan_execute", "baseline")


def _row(label: str, report, price) -> str:  # type: ignore[no-untyped-def]
    s = report.summary()
    est = (s["input_tokens_per_task"] * price.input + s["output_tokens_per_task"] * price.output) / 1e6
    return (f"| {label} | {s['success_rate']:.3f} | {s['pass_hat_k']:.3f} | {s['tool_call_accuracy']:.3f} | "
            f"{s['invalid_call_rate']:.3f} | {s['mean_steps']:.2f} | {s['input_tokens_per_task']:.0f} + "
            f"{s['output_tokens_per_task']:.0f} | ${est:.5f} | {s['p50_s']:.3f} | {s['p95_s']:.3f} |")


def quality(env, trials: int, local_tasks: int, temperature: float, price, skip_local: bool,  # type: ignore[no-untyped-def]
            local_patterns: tuple[str, ...], local_steps: int) -> None:
    print(f"| pattern x model | success | pass^{trials} | tool-call acc. | invalid rate | model calls | tokens in + out "
          "| est. cost/task | p50 s | p95 s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for pattern in PATTERNS:
        report = run_agents(env, AgentConfig(pattern=pattern, trials=trials, approval="approve_all"))
        print(_row(f"{pattern} x scripted ({len(env.tasks)} tasks)", report, price), flush=True)
    if skip_local:
        return
    subset = tuple(t.id for d in ("easy", "medium", "hard") for t in [x for x in env.tasks if x.difficulty == d][:local_tasks])
    for pattern in local_patterns:
        started = time.perf_counter()
        config = AgentConfig(pattern=pattern, model="local", trials=trials, tasks=subset, max_steps=local_steps,
                             temperature=temperature)
        report = run_agents(env, config)
        print(_row(f"{pattern} x Gemma 3 270M ({len(subset)} tasks, T={temperature})", report, price)
              + f" <!-- {time.perf_counter() - started:.0f} s -->", flush=True)


def plain_loop(env, task, model, max_steps: int) -> int:  # type: ignore[no-untyped-def]
    """The ReAct turns without LangGraph: ask, run the calls, append, until a reply without calls."""
    tools = env.tool_map
    state = initial_state(env, task)
    messages, world, steps = state["messages"], state["world"], 0
    while steps < max_steps:
        turn = model.respond(ModelRequest(system=env.system, messages=messages, tools=env.tools))
        steps += 1
        messages = [*messages, {"role": "assistant", "content": [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)} for c in turn.calls] or turn.text}]
        if not turn.calls:
            break
        blocks = []
        for call in turn.calls:
            world, result = run_tool(tools, call, world)
            blocks.append({"type": "tool_result", "tool_use_id": call.id, "content": result.content})
        messages = [*messages, {"role": "user", "content": blocks}]
    if not env.check(task, world, ""):
        raise AssertionError(f"the plain loop failed {task.id}")
    return steps


def overhead(env, rounds: int) -> None:  # type: ignore[no-untyped-def]
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    folder = Path(tempfile.mkdtemp())
    times: dict[str, list[float]] = {"plain": [], "graph": [], "graph+memory": [], "graph+sqlite": []}
    steps = sum(plain_loop(env, t, ScriptedModel(t.reference), 40) for t in env.tasks)
    for r in range(rounds):
        for mode in times:
            conn = sqlite3.connect(folder / f"{r}-{mode}.sqlite", check_same_thread=False)
            saver = {"graph+memory": InMemorySaver(), "graph+sqlite": SqliteSaver(conn)}.get(mode)
            started = time.perf_counter()
            for task in env.tasks:
                model = ScriptedModel(task.reference)
                if mode == "plain":
                    plain_loop(env, task, model, 40)
                else:
                    _graph_pass(env, task, model, saver, f"{r}:{task.id}")
            times[mode].append(time.perf_counter() - started)
            conn.close()
    base = statistics.median(times["plain"])
    print(f"\nLangGraph orchestration over {len(env.tasks)} tasks ({steps} model calls), median of {rounds} rounds:")
    print("| loop | ms per pass | us per model call | added us per call | ratio to plain |")
    print("|---|---|---|---|---|")
    for mode, values in times.items():
        t = statistics.median(values)
        print(f"| {mode} | {1000 * t:.1f} | {1e6 * t / steps:.1f} | {1e6 * (t - base) / steps:+.1f} | {t / base:.1f}x |")


def _graph_pass(env, task, model, saver, thread: str):  # type: ignore[no-untyped-def]
    """The ReAct graph (built and compiled per task, as the runner does) invoked once."""
    from workbench.agents.patterns import build_graph

    graph = build_graph("react", env, task, model, max_steps=40, checkpointer=saver)
    values = graph.invoke(initial_state(env, task), {"recursion_limit": 200, "configurable": {"thread_id": thread}})
    if not env.check(task, values["world"], ""):
        raise AssertionError(f"the graph failed {task.id}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--local-tasks", type=int, default=2, help="Gemma: tasks per difficulty")
    parser.add_argument("--temperature", type=float, default=0.7, help="Gemma's sampling temperature")
    parser.add_argument("--local-patterns", default="react,plan_execute,baseline", help="Gemma: patterns to run")
    parser.add_argument("--local-steps", type=int, default=8, help="Gemma: model calls per trial")
    parser.add_argument("--rounds", type=int, default=5, help="overhead: interleaved rounds")
    parser.add_argument("--price-model", default="claude-haiku-4-5", help="prices for the estimated cost")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--only", choices=("quality", "overhead"))
    args = parser.parse_args()
    env = diagram_environment()
    if args.only != "overhead":
        quality(env, args.trials, args.local_tasks, args.temperature, price_of(args.price_model, load_prices()),
                args.skip_local, tuple(args.local_patterns.split(",")), args.local_steps)
    if args.only != "quality":
        overhead(env, args.rounds)


if __name__ == "__main__":
    main()
