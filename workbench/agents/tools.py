"""Tools an agent can call: a name, a description, a JSON input schema and a pure function.

A tool's function takes the environment's state (a JSON-like value, so LangGraph can checkpoint
it) and the call's arguments, and returns the new state and the text handed back to the model.
`run_tool` never raises for the model's mistakes: an unknown tool, arguments failing the
schema, or a function that raises becomes an error result with its kind, counted by the
metrics and shown to the model so it can correct itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Tool", "ToolCall", "ToolResult", "ToolError", "ErrorKind", "run_tool", "tool_specs"]

ErrorKind = Literal["unknown_tool", "invalid_arguments", "tool_error", "denied"]


class ToolError(Exception):
    """Raised by a tool function for a call that cannot be carried out (the message goes to the model)."""


@dataclass(frozen=True, kw_only=True)
class Tool:
    """One tool in the Anthropic `tools` format, plus the function that carries it out.

    `function(state, **arguments)` returns `(new_state, text)`; it must not mutate `state`.
    `destructive` tools can be made to wait for a reviewer's approval.
    """

    name: str
    description: str
    input_schema: Mapping[str, Any]
    function: Callable[..., tuple[Any, str]] = field(repr=False, compare=False)
    destructive: bool = False

    def __post_init__(self) -> None:
        if self.input_schema.get("type") != "object":
            raise ValueError(f"tool {self.name!r}: input_schema must be a JSON schema with type 'object'")

    def spec(self) -> dict[str, Any]:
        """The tool as the Messages API's `tools` entry."""
        return {"name": self.name, "description": self.description, "input_schema": dict(self.input_schema)}

    def __call__(self, state: Any, **arguments: Any) -> tuple[Any, str]:
        return self.function(state, **arguments)


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    """A call the model asked for: its id (the API's `tool_use` id), the tool's name and arguments."""

    id: str
    name: str
    arguments: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": dict(self.arguments)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        return cls(id=str(data.get("id", "")), name=data["name"], arguments=dict(data.get("arguments", {})))


@dataclass(frozen=True, kw_only=True)
class ToolResult:
    """What a call returned: the text for the model and, for a failed call, why it failed."""

    call_id: str
    content: str
    error: ErrorKind | None = None


def tool_specs(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """The `tools` list of a Messages API request."""
    return [tool.spec() for tool in tools]


def _validator(schema: Mapping[str, Any]) -> Any:
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


_VALIDATORS: dict[str, Any] = {}


def run_tool(tools: Mapping[str, Tool], call: ToolCall, state: Any) -> tuple[Any, ToolResult]:
    """Validate and run one call; the new state and its result (the old state when the call failed).

    Args:
        tools: the environment's tools by name.
        call: what the model asked for.
        state: the environment's current state.
    """
    tool = tools.get(call.name)
    if tool is None:
        return state, ToolResult(
            call_id=call.id, error="unknown_tool",
            content=f"error: unknown tool {call.name!r}; the tools are {sorted(tools)}",
        )
    key = json.dumps(tool.input_schema, sort_keys=True)
    validator = _VALIDATORS.get(key) or _VALIDATORS.setdefault(key, _validator(tool.input_schema))
    problems = sorted(validator.iter_errors(dict(call.arguments)), key=lambda e: list(e.absolute_path))
    if problems:
        where = "/".join(str(p) for p in problems[0].absolute_path) or "(arguments)"
        return state, ToolResult(
            call_id=call.id, error="invalid_arguments",
            content=f"error: arguments of {call.name} fail its schema at {where}: {problems[0].message}",
        )
    try:
        new_state, text = tool(state, **call.arguments)
    except ToolError as exc:
        return state, ToolResult(call_id=call.id, error="tool_error", content=f"error: {exc}")
    except Exception as exc:  # a bug in a tool is the tool's failure, reported, not the run's crash
        return state, ToolResult(
            call_id=call.id, error="tool_error", content=f"error: {call.name} raised {type(exc).__name__}: {exc}"
        )
    return new_state, ToolResult(call_id=call.id, content=text)
