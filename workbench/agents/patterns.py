"""Agent patterns as LangGraph `StateGraph`s: the tool loop / ReAct, plan-and-execute, the one-call baseline.

The tool loop is the guide's: an `llm` node, a conditional edge on whether the reply asked
for tools, a `tools` node that runs them and loops back, and a `finalize` node. ReAct is the
same graph with a think-then-act prompt; both stop with status `step_limit` once `max_steps`
model calls are spent. Plan-and-execute adds a `planner` (one forced `make_plan` call), runs
the loop once per plan step, and a `replanner` after each step keeps, revises or ends the
plan. The baseline is one model call without tools that answers with the final state.

Graph state is JSON-like (messages in the Messages API's shape, the environment's state,
events), so a SQLite checkpointer can resume and inspect any run. Destructive tools can wait
for a reviewer through `langgraph.types.interrupt`; the runner answers with its policy.
"""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypedDict

from ..tracing import spans as tracing
from .models import AgentModel, ModelRequest, ModelTurn
from .tasks import Environment, Task
from .tools import Tool, ToolCall, ToolResult, run_tool

__all__ = ["PATTERNS", "Pattern", "AgentState", "build_graph", "initial_state", "PLAN_TOOL", "REPLAN_TOOL"]

Pattern = Literal["tool_loop", "react", "plan_execute", "baseline"]
PATTERNS: tuple[str, ...] = ("tool_loop", "react", "plan_execute", "baseline")


class AgentState(TypedDict, total=False):
    """What the graph carries between nodes (and the checkpointer stores)."""

    messages: list[dict[str, Any]]  # the current conversation (one plan step's, in plan-and-execute)
    world: Any  # the environment's state
    events: Annotated[list[dict[str, Any]], operator.add]  # every model turn and tool call, in order
    pending: list[dict[str, Any]]  # tool calls of the last model turn, not yet run
    llm_calls: int
    status: str  # "running", "done", "step_limit"
    answer: str
    plan: list[str]
    step_index: int


def _no_op(state: Any, **arguments: Any) -> tuple[Any, str]:
    return state, "noted"


PLAN_TOOL = Tool(
    name="make_plan", function=_no_op,
    description="Write the plan: the edits to make, one short imperative step each, in order.",
    input_schema={"type": "object", "properties": {"steps": {"type": "array", "items": {"type": "string"},
                                                              "minItems": 1, "maxItems": 16}},
                  "required": ["steps"], "additionalProperties": False},
)
REPLAN_TOOL = Tool(
    name="replan", function=_no_op,
    description="After a step: set done to true if the task is complete, else give the remaining steps.",
    input_schema={"type": "object", "properties": {"done": {"type": "boolean"},
                                                   "steps": {"type": "array", "items": {"type": "string"}, "maxItems": 16}},
                  "required": ["done", "steps"], "additionalProperties": False},
)
_REACT = ("\n\nWork in the ReAct style: before each tool call, write one short Thought saying what you will do "
          "next and why; then make the call.")
_PLAN = "\n\nFirst plan the whole change as a list of edit steps by calling make_plan."
_BASELINE = ("\n\nYou have no tools: reply with only the final state as one JSON object matching this schema, "
             "nothing else.\nSchema: ")


def initial_state(env: Environment, task: Task) -> AgentState:
    """The graph's input for `task`: the instruction and the start state."""
    return {"messages": [{"role": "user", "content": _opening(env, task)}], "world": task.start, "events": [],
            "pending": [], "llm_calls": 0, "status": "running", "answer": "", "plan": [], "step_index": 0}


def _opening(env: Environment, task: Task) -> str:
    shown = env.show(task.start)
    return task.instruction + (f"\n\nThe current state:\n{shown}" if shown else "")


def _turn_event(turn: ModelTurn, purpose: str, started: float) -> dict[str, Any]:
    u = turn.usage
    return {
        "kind": "llm", "purpose": purpose, "at": started, "model": u.model, "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens, "cache_read_tokens": u.cache_read_tokens,
        "cache_write_tokens": u.cache_write_tokens, "cost_usd": u.cost_usd, "latency_s": u.latency_s,
        "ttft_s": u.time_to_first_token_s, "text": turn.text, "calls": [c.to_dict() for c in turn.calls],
        "invalid": turn.invalid,
    }


def _ask(model: AgentModel, request: ModelRequest) -> tuple[ModelTurn, dict[str, Any]]:
    """One model call, traced as an `llm` span of the task's trace."""
    started = time.time()
    span = tracing.stage("llm", purpose=request.purpose, turn=len(request.messages))
    try:
        turn = model.respond(request)
    except Exception as exc:
        span.end(error=f"{type(exc).__name__}: {exc}")
        raise
    u = turn.usage
    span.end(model=u.model, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
             cache_read_tokens=u.cache_read_tokens, cost_usd=u.cost_usd, latency_s=u.latency_s,
             ttft_s=u.time_to_first_token_s, tool_calls=len(turn.calls), invalid=turn.invalid or "")
    return turn, _turn_event(turn, request.purpose, started)


def _assistant(turn: ModelTurn) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": turn.text}] if turn.text else []
    content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)} for c in turn.calls]
    return {"role": "assistant", "content": content or turn.text or "(no reply)"}


def _run_calls(env: Environment, world: Any, calls: Sequence[ToolCall], approvals: Sequence[bool]) -> tuple[Any, list, list]:
    """Run the calls in order (denied ones are not run); the new world, result blocks and events."""
    tools = env.tool_map
    blocks, events = [], []
    for call, approved in zip(calls, approvals):
        started = time.perf_counter()
        span = tracing.stage("tool", tool=call.name, arguments=json.dumps(dict(call.arguments), sort_keys=True))
        if approved:
            world, result = run_tool(tools, call, world)
        else:
            result = ToolResult(call_id=call.id, error="denied", content="error: a reviewer denied this call")
        elapsed = time.perf_counter() - started
        span.end(result_chars=len(result.content), error=result.error or "")
        blocks.append({"type": "tool_result", "tool_use_id": call.id, "content": result.content,
                       **({"is_error": True} if result.error else {})})
        events.append({"kind": "tool", "at": time.time(), "name": call.name, "arguments": dict(call.arguments),
                       "error": result.error, "result": result.content[:500], "result_chars": len(result.content),
                       "latency_s": elapsed})
    return world, blocks, events


def build_graph(
    pattern: str, env: Environment, task: Task, model: AgentModel, *, max_steps: int = 20,
    require_approval: bool = False, checkpointer: Any = None, seed: int = 0,
) -> Any:
    """The compiled LangGraph graph of `pattern` for one task.

    Longer than most functions here on purpose: the node functions are closures over the
    task, model and step budget, and each pattern's edges read best next to its nodes.

    Args:
        pattern: one of `PATTERNS`.
        env: the environment (tools, system prompt).
        task: the task (its instruction is the plan-and-execute context).
        model: what answers each model node.
        max_steps: model calls allowed before the run stops with status `step_limit`.
        require_approval: destructive tools wait for a reviewer (a LangGraph interrupt).
        checkpointer: a LangGraph checkpointer (needed for interrupts and resuming).
        seed: the sampling seed handed to the model (the trial number).

    Raises:
        ValueError: unknown pattern or a non-positive step limit.
    """
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    if pattern not in PATTERNS:
        raise ValueError(f"unknown agent pattern {pattern!r}; choose one of {list(PATTERNS)}")
    if max_steps <= 0:
        raise ValueError(f"max_steps must be positive, got {max_steps}")
    system = env.system + {"react": _REACT, "plan_execute": _PLAN}.get(pattern, "")
    planned = pattern == "plan_execute"

    def request(state: AgentState, **kwargs: Any) -> ModelRequest:
        return ModelRequest(system=system, messages=state["messages"], seed=seed, **kwargs)

    def llm(state: AgentState) -> dict[str, Any]:
        if state["llm_calls"] >= max_steps:
            return {"status": "step_limit", "pending": []}
        hint = {"step_index": state["step_index"]} if planned else {}
        turn, event = _ask(model, request(state, tools=env.tools, hint=hint))
        update: dict[str, Any] = {"llm_calls": state["llm_calls"] + 1, "events": [event]}
        if turn.invalid is not None:  # fed back so the model can correct itself; counted by the metrics
            update["messages"] = [*state["messages"], _assistant(turn),
                                  {"role": "user", "content": f"error: {turn.invalid}; reply with one valid tool call"}]
            return {**update, "pending": [], "status": "invalid"}
        update["messages"] = [*state["messages"], _assistant(turn)]
        if turn.calls:
            return {**update, "pending": [c.to_dict() for c in turn.calls], "status": "running"}
        return {**update, "pending": [], "status": "running", "answer": turn.text}

    def tools(state: AgentState) -> dict[str, Any]:
        calls = [ToolCall.from_dict(c) for c in state["pending"]]
        destructive = {t.name for t in env.tools if t.destructive}
        # every approval is asked before any tool runs, so a resumed node reruns no tool twice
        approvals = [bool(interrupt({"tool": c.name, "arguments": dict(c.arguments)}))
                     if require_approval and c.name in destructive else True for c in calls]
        world, blocks, events = _run_calls(env, state["world"], calls, approvals)
        return {"world": world, "pending": [], "events": events,
                "messages": [*state["messages"], {"role": "user", "content": blocks}]}

    def after_llm(state: AgentState) -> str:
        if state["status"] == "step_limit":
            return "finalize"
        if state["pending"]:
            return "tools"
        if state["status"] == "invalid":
            return "llm"
        return "replanner" if planned else "finalize"

    def finalize(state: AgentState) -> dict[str, Any]:
        return {"status": "step_limit" if state["status"] == "step_limit" else "done"}

    graph = StateGraph(AgentState)
    graph.add_node("finalize", finalize)
    graph.add_edge("finalize", END)
    if pattern == "baseline":
        def answer(state: AgentState) -> dict[str, Any]:
            turn, event = _ask(model, ModelRequest(
                system=env.system + _BASELINE + json.dumps(dict(env.baseline_schema)), messages=state["messages"],
                purpose="answer", answer_schema=env.baseline_schema, seed=seed))
            return {"llm_calls": 1, "events": [event], "answer": turn.text,
                    "world": env.from_baseline(task, _first_json(turn.text))}

        graph.add_node("answer", answer)
        graph.add_edge(START, "answer")
        graph.add_edge("answer", "finalize")
        return graph.compile(checkpointer=checkpointer)
    graph.add_node("llm", llm)
    graph.add_node("tools", tools)
    graph.add_conditional_edges("llm", after_llm, ["tools", "finalize", "llm", *(["replanner"] if planned else [])])
    graph.add_edge("tools", "llm")
    if not planned:
        graph.add_edge(START, "llm")
        return graph.compile(checkpointer=checkpointer)
    _add_planning(graph, env, task, model, system=system, max_steps=max_steps, seed=seed)
    return graph.compile(checkpointer=checkpointer)


def _add_planning(graph: Any, env: Environment, task: Task, model: AgentModel, *, system: str, max_steps: int,
                  seed: int) -> None:
    """The planner and replanner nodes of plan-and-execute (the executor is the tool loop, one plan step at a time)."""
    from langgraph.graph import START

    def step_messages(plan: list[str], index: int, world: Any) -> list[dict[str, Any]]:
        done = "".join(f"\n{n}. {s} (done)" for n, s in enumerate(plan[:index], 1))
        shown = env.show(world)
        return [{"role": "user", "content": (
            f"Overall task: {task.instruction}\nPlan:{done}\n{index + 1}. {plan[index]} (now)\n\n"
            f"Carry out only step {index + 1}, then reply without a tool call."
            + (f"\n\nThe current state:\n{shown}" if shown else ""))}]

    def forced(state: AgentState, tool: Tool, purpose: str, content: str, hint: dict[str, Any]) -> tuple[dict | None, dict]:
        turn, event = _ask(model, ModelRequest(system=system, messages=[{"role": "user", "content": content}],
                                               tools=(tool,), purpose=purpose, hint=hint, seed=seed))  # type: ignore[arg-type]
        call = next((c for c in turn.calls if c.name == tool.name), None)
        return (dict(call.arguments) if call is not None else None), event

    def planner(state: AgentState) -> dict[str, Any]:
        arguments, event = forced(state, PLAN_TOOL, "plan", state["messages"][0]["content"], {})
        steps = [str(s) for s in (arguments or {}).get("steps", []) if str(s).strip()]
        if not steps:  # no usable plan: the whole task is the one step (the event records the invalid turn)
            event["invalid"] = event["invalid"] or "no make_plan call with steps"
            steps = [task.instruction]
        return {"plan": steps, "step_index": 0, "llm_calls": 1, "events": [event],
                "messages": step_messages(steps, 0, state["world"])}

    def replanner(state: AgentState) -> dict[str, Any]:
        plan, index = state["plan"], state["step_index"]
        if state["llm_calls"] >= max_steps:
            return {"status": "step_limit"}
        remaining = plan[index + 1:]
        content = (f"Overall task: {task.instruction}\nDone so far:"
                   + "".join(f"\n- {s}" for s in plan[: index + 1])
                   + "\nRemaining plan:" + ("".join(f"\n- {s}" for s in remaining) or " (none)")
                   + f"\n\nThe current state:\n{env.show(state['world'])}")
        arguments, event = forced(state, REPLAN_TOOL, "replan", content, {"remaining": remaining})
        update: dict[str, Any] = {"llm_calls": state["llm_calls"] + 1, "events": [event]}
        if arguments is None:
            event["invalid"] = event["invalid"] or "no replan call"
            steps = remaining
        else:
            steps = [] if arguments.get("done") else [str(s) for s in arguments.get("steps", [])]
        if not steps:
            return {**update, "status": "done"}
        new_plan = [*plan[: index + 1], *steps]
        return {**update, "plan": new_plan, "step_index": index + 1,
                "messages": step_messages(new_plan, index + 1, state["world"])}

    def after_replan(state: AgentState) -> str:
        return "finalize" if state["status"] in ("done", "step_limit") else "llm"

    graph.add_node("planner", planner)
    graph.add_node("replanner", replanner)
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "llm")
    graph.add_conditional_edges("replanner", after_replan, ["llm", "finalize"])


def _first_json(text: str) -> Any:
    """The first JSON object in `text` (models wrap JSON in prose or code fences), or None."""
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            return decoder.raw_decode(text, start)[0]
        except json.JSONDecodeError:
            continue
    return None

