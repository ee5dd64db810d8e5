"""The diagram environment: a system-architecture diagram edited through tools (the guide's worked case).

A diagram is plain JSON so LangGraph can checkpoint it: `{"nodes": {name: {"type": ..,
"properties": {..}}}, "edges": [{"source": .., "target": .., "label": ..}, ...]}`. Edges are
directed, at most one per (source, target), kept sorted. Success is the final diagram equal to
the goal as a graph (same nodes with the same type and properties, same labelled edges), not a
matching trajectory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..io import DATA_DIR
from .tasks import Environment, Task, TaskFileError
from .tools import Tool, ToolCall, ToolError

__all__ = [
    "NODE_TYPES", "DIAGRAM_SCHEMA", "TASKS_PATH", "diagram_tools", "validate_diagram", "same_diagram",
    "apply_calls", "load_diagram_tasks", "diagram_environment",
]

TASKS_PATH = DATA_DIR / "agents" / "diagram_tasks.jsonl"

NODE_TYPES = (
    "client", "gateway", "load_balancer", "service", "function", "database", "cache", "queue", "storage",
    "external", "monitoring",
)
_VALUE = {"type": ["string", "number", "boolean"]}
_PROPERTIES = {"type": "object", "additionalProperties": _VALUE}
_NAME = {"type": "string", "minLength": 1, "maxLength": 64}

DIAGRAM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "nodes": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"type": {"enum": list(NODE_TYPES)}, "properties": _PROPERTIES},
                "required": ["type", "properties"],
                "additionalProperties": False,
            },
        },
        "edges": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"source": _NAME, "target": _NAME, "label": {"type": "string"}},
                "required": ["source", "target", "label"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["nodes", "edges"],
    "additionalProperties": False,
}


def validate_diagram(diagram: Any) -> list[str]:
    """Everything wrong with `diagram` (empty when it is a valid diagram)."""
    import jsonschema

    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in jsonschema.Draft202012Validator(DIAGRAM_SCHEMA).iter_errors(diagram)
    ]
    if problems:
        return problems
    names = set(diagram["nodes"])
    pairs = [(e["source"], e["target"]) for e in diagram["edges"]]
    problems += [f"edge {s} -> {t} names a missing node" for s, t in pairs if s not in names or t not in names]
    problems += [f"edge {s} -> {t} appears twice" for s, t in sorted(set(pairs)) if pairs.count((s, t)) > 1]
    return problems


def _graph(diagram: Mapping[str, Any]) -> tuple[dict[str, Any], set[tuple[str, str, str]]]:
    nodes = {name: (node["type"], json.dumps(node["properties"], sort_keys=True)) for name, node in diagram["nodes"].items()}
    return nodes, {(e["source"], e["target"], e["label"]) for e in diagram["edges"]}


def same_diagram(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two diagrams are the same graph (node order and edge order do not matter)."""
    return _graph(a) == _graph(b)


def _copy(diagram: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "nodes": {n: {"type": v["type"], "properties": dict(v["properties"])} for n, v in diagram["nodes"].items()},
        "edges": [dict(e) for e in diagram["edges"]],
    }


def _sorted_edges(edges: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(edges, key=lambda e: (e["source"], e["target"]))


def _need(diagram: Mapping[str, Any], name: str) -> None:
    if name not in diagram["nodes"]:
        raise ToolError(f"no node named {name!r}; the nodes are {sorted(diagram['nodes'])}")


def add_node(diagram: Mapping[str, Any], *, name: str, type: str, properties: Mapping[str, Any] | None = None) -> tuple[dict, str]:
    if name in diagram["nodes"]:
        raise ToolError(f"a node named {name!r} already exists; use update_node to change it")
    new = _copy(diagram)
    new["nodes"][name] = {"type": type, "properties": dict(properties or {})}
    return new, f"added {type} node {name!r}"


def delete_node(diagram: Mapping[str, Any], *, name: str) -> tuple[dict, str]:
    _need(diagram, name)
    new = _copy(diagram)
    del new["nodes"][name]
    kept = [e for e in new["edges"] if name not in (e["source"], e["target"])]
    dropped = len(new["edges"]) - len(kept)
    new["edges"] = kept
    return new, f"deleted node {name!r} and its {dropped} edge(s)"


def update_node(
    diagram: Mapping[str, Any], *, name: str, type: str | None = None, properties: Mapping[str, Any] | None = None,
    remove_properties: list[str] | None = None, rename: str | None = None,
) -> tuple[dict, str]:
    _need(diagram, name)
    if rename is not None and rename != name and rename in diagram["nodes"]:
        raise ToolError(f"cannot rename {name!r} to {rename!r}: that name is taken")
    missing = sorted(set(remove_properties or ()) - set(diagram["nodes"][name]["properties"]))
    if missing:
        raise ToolError(f"node {name!r} has no properties {missing}")
    new = _copy(diagram)
    node = new["nodes"][name]
    if type is not None:
        node["type"] = type
    node["properties"].update(properties or {})
    for key in remove_properties or ():
        del node["properties"][key]
    if rename is not None and rename != name:
        new["nodes"] = {(rename if n == name else n): v for n, v in new["nodes"].items()}
        for edge in new["edges"]:
            for end in ("source", "target"):
                if edge[end] == name:
                    edge[end] = rename
        new["edges"] = _sorted_edges(new["edges"])
    return new, f"updated node {name!r}" + (f" (now {rename!r})" if rename and rename != name else "")


def add_edge(diagram: Mapping[str, Any], *, source: str, target: str, label: str = "") -> tuple[dict, str]:
    _need(diagram, source)
    _need(diagram, target)
    if source == target:
        raise ToolError(f"an edge needs two different nodes, got {source!r} twice")
    if any(e["source"] == source and e["target"] == target for e in diagram["edges"]):
        raise ToolError(f"an edge {source} -> {target} already exists; delete it first to relabel it")
    new = _copy(diagram)
    new["edges"] = _sorted_edges([*new["edges"], {"source": source, "target": target, "label": label}])
    return new, f"added edge {source} -> {target}"


def delete_edge(diagram: Mapping[str, Any], *, source: str, target: str) -> tuple[dict, str]:
    kept = [e for e in diagram["edges"] if not (e["source"] == source and e["target"] == target)]
    if len(kept) == len(diagram["edges"]):
        raise ToolError(f"no edge {source} -> {target}")
    new = _copy(diagram)
    new["edges"] = [dict(e) for e in kept]
    return new, f"deleted edge {source} -> {target}"


def get_diagram(diagram: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    return diagram, json.dumps(diagram, sort_keys=True)


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def diagram_tools() -> tuple[Tool, ...]:
    """The six diagram tools (`delete_node` is destructive: it may need approval)."""
    node_type = {"enum": list(NODE_TYPES), "description": "the kind of component"}
    return (
        Tool(name="add_node", function=add_node,
             description="Add a component to the diagram. Names are unique.",
             input_schema=_object({"name": _NAME, "type": node_type,
                                   "properties": {**_PROPERTIES, "description": "settings, e.g. {\"engine\": \"postgres\"}"}},
                                  ["name", "type"])),
        Tool(name="delete_node", function=delete_node, destructive=True,
             description="Delete a component and every edge touching it.",
             input_schema=_object({"name": _NAME}, ["name"])),
        Tool(name="update_node", function=update_node,
             description="Change a component: its type, properties to set (merged), properties to remove, or its name "
                         "(edges follow a rename).",
             input_schema=_object({"name": _NAME, "type": node_type, "properties": _PROPERTIES,
                                   "remove_properties": {"type": "array", "items": {"type": "string"}},
                                   "rename": _NAME}, ["name"])),
        Tool(name="add_edge", function=add_edge,
             description="Connect two components with a directed edge (source calls or sends to target).",
             input_schema=_object({"source": _NAME, "target": _NAME, "label": {"type": "string"}}, ["source", "target"])),
        Tool(name="delete_edge", function=delete_edge,
             description="Remove the edge from source to target.",
             input_schema=_object({"source": _NAME, "target": _NAME}, ["source", "target"])),
        Tool(name="get_diagram", function=get_diagram,
             description="Return the whole diagram as JSON.", input_schema=_object({}, [])),
    )


def apply_calls(diagram: Mapping[str, Any], calls: tuple[ToolCall, ...] | list[ToolCall]) -> dict[str, Any]:
    """The diagram after running `calls` in order through the tools (a failing call raises).

    Raises:
        ToolError: a call failed (the message names it).
    """
    from .tools import run_tool

    tools = {t.name: t for t in diagram_tools()}
    state: Any = diagram
    for n, call in enumerate(calls, 1):
        state, result = run_tool(tools, call, state)
        if result.error:
            raise ToolError(f"call {n} ({call.name} {dict(call.arguments)}) failed: {result.content}")
    return _copy(state)


SYSTEM = (
    "You edit a system-architecture diagram by calling tools. The diagram has nodes (a unique name, a type "
    f"from {', '.join(NODE_TYPES)}, and properties) and directed, labelled edges. Carry out the user's "
    "instruction exactly: change nothing else, use the exact names and property values given, and leave edge "
    "labels empty unless a label is given. Call get_diagram when you need the current state. When the change "
    "is complete, reply with a short summary and no tool call."
)


EXAMPLE = "\n".join([
    "Instruction: Add a queue node named jobs with engine sqs, and connect api to it.",
    'Call: {"tool": "add_node", "arguments": {"name": "jobs", "type": "queue", "properties": {"engine": "sqs"}}}',
    "Result: added queue node 'jobs'",
    'Call: {"tool": "add_edge", "arguments": {"source": "api", "target": "jobs"}}',
    "Result: added edge api -> jobs",
    'Call: {"tool": "finish", "answer": "Added jobs and connected api to it."}',
])


def _task_from_line(number: int, line: str, source: Path) -> Task:
    where = f"{source}:{number}"
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TaskFileError(f"{where}: not valid JSON ({exc.msg}); one task object per line") from None
    missing = sorted({"id", "instruction", "start", "goal", "reference"} - set(raw))
    if missing:
        raise TaskFileError(f"{where}: task is missing {missing}")
    for field_name in ("start", "goal"):
        problems = validate_diagram(raw[field_name])
        if problems:
            raise TaskFileError(
                f"{where}: task {raw['id']!r} has a {field_name} that is not a valid diagram: "
                f"{'; '.join(problems[:3])}; fix it to match DIAGRAM_SCHEMA"
            )
    calls = tuple(ToolCall(id=f"ref_{i}", name=c["name"], arguments=c.get("arguments", {}))
                  for i, c in enumerate(raw["reference"]))
    return Task(id=raw["id"], instruction=raw["instruction"], start=raw["start"], goal=raw["goal"],
                reference=calls, reference_answer=raw.get("reference_answer", "Done."),
                reference_baseline=json.dumps(raw["goal"], sort_keys=True),
                difficulty=raw.get("difficulty", ""), metadata={"edits": len(calls)})


def load_diagram_tasks(path: str | Path | None = None) -> tuple[Task, ...]:
    """Read and validate a diagram task file (JSON lines; default the bundled set).

    Raises:
        TaskFileError: the file is missing, a line is not JSON, a start or goal is not a valid
            diagram, or two tasks share an id.
    """
    source = Path(path) if path is not None else TASKS_PATH
    if not source.is_file():
        raise TaskFileError(f"no task file at {str(source)!r}; pass the path of a .jsonl task file")
    tasks = [_task_from_line(n, line, source)
             for n, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    ids = [t.id for t in tasks]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise TaskFileError(f"{source}: task ids {dupes[:5]} appear more than once; ids must be unique")
    if not tasks:
        raise TaskFileError(f"{source}: no tasks; add one JSON object per line")
    return tuple(tasks)


def _check(task: Task, diagram: Any, answer: str) -> bool:
    return not validate_diagram(diagram) and same_diagram(diagram, task.goal)


def _from_baseline(task: Task, parsed: Any) -> Any:
    """A baseline answers with the whole final diagram; anything else leaves the start unchanged."""
    return parsed if parsed is not None and not validate_diagram(parsed) else task.start


def diagram_environment(path: str | Path | None = None) -> Environment:
    """The diagram environment over a task file (default: the bundled tasks)."""
    return Environment(name="diagram", tools=diagram_tools(), system=SYSTEM, tasks=load_diagram_tasks(path),
                       check=_check, baseline_schema=DIAGRAM_SCHEMA, from_baseline=_from_baseline,
                       show=lambda diagram: json.dumps(diagram, sort_keys=True), example=EXAMPLE)
