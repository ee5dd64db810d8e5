"""Agent models: one method, `respond(request) -> ModelTurn`; the scripted model and the local Gemma.

A request carries the conversation in the Messages API's own shape (`tool_use` and
`tool_result` blocks), so Claude gets it as is, the local base model gets it rendered as a
completion prompt, and the scripted model reads only what it needs. `purpose` says which node
asks: "act" (a ReAct or executor turn), "plan", "replan" or "answer" (the one-call baseline).
Claude lives in `agents/claude.py`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..types import Usage
from .tools import Tool, ToolCall

__all__ = [
    "Purpose", "ModelRequest", "ModelTurn", "AgentModel", "AgentModelError", "ScriptedModel", "LocalAgentModel",
    "describe_call", "tool_calls_made",
]

Purpose = Literal["act", "plan", "replan", "answer"]


class AgentModelError(RuntimeError):
    """The model could not be reached or answered after its retries; the task fails with this message."""


@dataclass(frozen=True, kw_only=True)
class ModelRequest:
    """What a graph node asks the model.

    Args:
        system: the system prompt (static: cached with the tools).
        messages: the conversation, Messages API style.
        tools: the tools offered (for "plan"/"replan" the one tool the answer must call).
        purpose: which node asks.
        answer_schema: for "answer", the JSON schema the reply must match.
        hint: pattern state the scripted model replays from (the step index, the remaining plan);
            real models see the same facts in `messages`.
        seed: sampling seed (the trial number), for models that sample.
    """

    system: str
    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[Tool] = ()
    purpose: Purpose = "act"
    answer_schema: Mapping[str, Any] | None = None
    hint: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class ModelTurn:
    """One model reply: its text, the tool calls it asked for, its usage, and why it was invalid (if it was)."""

    text: str = ""
    calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=lambda: Usage(model=""))
    invalid: str | None = None


class AgentModel(Protocol):
    def respond(self, request: ModelRequest) -> ModelTurn: ...


def describe_call(call: ToolCall) -> str:
    """A call as one line of text, e.g. `add_node {"name": "cache", "type": "cache"}` (plan steps)."""
    return f"{call.name} {json.dumps(dict(call.arguments), sort_keys=True)}"


def tool_calls_made(messages: Sequence[Mapping[str, Any]]) -> int:
    """How many `tool_use` blocks the assistant has sent in `messages`."""
    return sum(
        1 for m in messages if m["role"] == "assistant" and not isinstance(m["content"], str)
        for block in m["content"] if block.get("type") == "tool_use"
    )


def _last_is_tool_result(messages: Sequence[Mapping[str, Any]]) -> bool:
    last = messages[-1]["content"] if messages else ""
    return not isinstance(last, str) and any(b.get("type") == "tool_result" for b in last)


class ScriptedModel:
    """Replays a given call sequence (tests, reference trajectories, orchestration overhead).

    It is stateless across calls (it reads the position from the conversation or the pattern's
    hint), so trials, resumed runs and plan-and-execute replay it alike.

    Args:
        calls: the sequence to replay.
        answer: the final text once every call is made.
        baseline_answer: the reply to the one-call baseline.
        batch: calls per turn (more than one: parallel tool calls).
    """

    def __init__(self, calls: Sequence[ToolCall], *, answer: str = "Done.", baseline_answer: str = "",
                 batch: int = 1) -> None:
        if batch <= 0:
            raise ValueError(f"batch must be positive, got {batch}")
        self.calls = tuple(calls)
        self.answer = answer
        self.baseline_answer = baseline_answer
        self.batch = batch

    def respond(self, request: ModelRequest) -> ModelTurn:
        """The next calls of the sequence for this request."""
        started = time.perf_counter()
        turn = self._turn(request)
        elapsed = time.perf_counter() - started
        return ModelTurn(text=turn.text, calls=turn.calls,
                         usage=Usage(model="scripted", latency_s=elapsed, time_to_first_token_s=elapsed, counted=True))

    def _turn(self, request: ModelRequest) -> ModelTurn:
        if request.purpose == "answer":
            return ModelTurn(text=self.baseline_answer)
        if request.purpose == "plan":
            steps = [describe_call(c) for c in self.calls]
            return ModelTurn(calls=(ToolCall(id="plan_0", name=request.tools[0].name, arguments={"steps": steps}),))
        if request.purpose == "replan":
            remaining = list(request.hint.get("remaining", ()))
            return ModelTurn(calls=(ToolCall(id="replan_0", name=request.tools[0].name,
                                             arguments={"done": not remaining, "steps": remaining}),))
        if "step_index" in request.hint:  # an executor turn of plan-and-execute: one step, then report
            index = int(request.hint["step_index"])
            if _last_is_tool_result(request.messages) or index >= len(self.calls):
                return ModelTurn(text=f"step {index + 1} done")
            return ModelTurn(calls=(self._numbered(index, index),))
        made = tool_calls_made(request.messages)
        if made >= len(self.calls):
            return ModelTurn(text=self.answer)
        return ModelTurn(calls=tuple(self._numbered(i, made) for i in range(made, min(made + self.batch, len(self.calls)))))

    def _numbered(self, index: int, turn: int) -> ToolCall:
        call = self.calls[index]
        return ToolCall(id=f"call_{turn}_{index}", name=call.name, arguments=dict(call.arguments))


FINISH = "finish"


def _grammar_schema(request: ModelRequest) -> dict[str, Any]:
    """One JSON object per turn: a call of one offered tool, or (for "act") finishing with an answer."""
    if request.purpose == "answer":
        return dict(request.answer_schema or {"type": "object", "properties": {"answer": {"type": "string"}},
                                              "required": ["answer"]})
    options = [
        {"type": "object", "properties": {"tool": {"const": t.name}, "arguments": dict(t.input_schema)},
         "required": ["tool", "arguments"], "additionalProperties": False}
        for t in request.tools
    ]
    if request.purpose == "act":
        options.append({"type": "object", "properties": {"tool": {"const": FINISH}, "answer": {"type": "string"}},
                        "required": ["tool", "answer"], "additionalProperties": False})
    return options[0] if len(options) == 1 else {"anyOf": options}


def _render_content(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        kind = block.get("type")
        if kind == "text" and block["text"]:
            parts.append(block["text"])
        elif kind == "tool_use":
            parts.append("Call: " + json.dumps({"tool": block["name"], "arguments": block["input"]}, sort_keys=True))
        elif kind == "tool_result":
            parts.append("Result: " + str(block.get("content", "")))
    return "\n".join(parts)


def _signature(tool: Tool) -> str:
    schema = tool.input_schema
    required = set(schema.get("required", ()))
    names = [n if n in required else f"{n}?" for n in schema.get("properties", {})]
    return f"{tool.name}({', '.join(names)})"


def completion_prompt(request: ModelRequest, example: str = "") -> str:
    """The request as a plain completion prompt for a base model (no chat template).

    Tools are listed as signatures (the grammar enforces their schemas, so the prompt stays
    short); `example` is a worked transcript in the same format (few-shot).
    """
    lines = [request.system, ""]
    if request.tools:
        lines.append("Tools:")
        lines += [f"- {_signature(t)}: {t.description}" for t in request.tools]
        finish = ', or {"tool": "finish", "answer": "..."} when done' if request.purpose == "act" else ""
        lines += ["", f'Each reply is one JSON object: {{"tool": NAME, "arguments": {{...}}}}{finish}.', ""]
    if example and request.purpose == "act":
        lines += ["Example:", example, ""]
    for message in request.messages:
        text = _render_content(message["content"])
        lines.append(("Instruction: " if message is request.messages[0] else "User: " if message["role"] == "user" else "")
                     + text)
    lines.append("Reply:" if request.purpose == "answer" else "Call:")
    return "\n".join(lines)


class LocalAgentModel:
    """A local GGUF base model (default the packaged Gemma 3 270M) constrained by a JSON-schema grammar.

    Every completion is sampled under a grammar of "one call of an offered tool (or finish)",
    so it parses unless it is cut off at `max_tokens`; output that still fails to parse is
    returned as an invalid turn, not raised. Token counts are the model's own; the cost is 0.
    One thread by default: on this shared 2-core machine a 20-token completion took 1.2 s with
    one thread and 20 s with two (spinning threads fighting other processes).
    """

    def __init__(self, *, model_path: str | None = None, n_ctx: int = 4096, threads: int = 1,
                 max_tokens: int = 256, temperature: float = 0.0, example: str = "") -> None:
        from ..generation.offline import _load_llama, gemma_path

        self.model_path = model_path or gemma_path()
        self.llm = _load_llama(self.model_path, n_ctx, threads)  # the generator's loader: one copy per process
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.example = example
        self._grammars: dict[str, Any] = {}

    def _grammar(self, schema: Mapping[str, Any]) -> Any:
        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def respond(self, request: ModelRequest) -> ModelTurn:
        """One grammar-constrained completion, parsed into a tool call, a final answer or an invalid turn."""
        prompt = completion_prompt(request, self.example)
        started = time.perf_counter()
        text, first, output_tokens = "", None, 0
        for chunk in self.llm.create_completion(
            prompt, max_tokens=self.max_tokens, temperature=self.temperature, seed=request.seed,
            grammar=self._grammar(_grammar_schema(request)), stream=True,
        ):
            choice = chunk["choices"][0]
            output_tokens += choice.get("finish_reason") is None
            if choice["text"] and first is None:
                first = time.perf_counter()
            text += choice["text"]
        end = time.perf_counter()
        usage = Usage(model=f"local:{self.model_path.rsplit('/', 1)[-1]}",
                      input_tokens=len(self.llm.tokenize(prompt.encode("utf-8"))), output_tokens=output_tokens,
                      latency_s=end - started, time_to_first_token_s=None if first is None else first - started,
                      counted=True)
        try:
            reply = json.loads(text)
        except json.JSONDecodeError as exc:
            return ModelTurn(text=text, usage=usage, invalid=f"malformed output ({exc.msg}): {text[:80]!r}")
        if request.purpose == "answer":
            return ModelTurn(text=json.dumps(reply), usage=usage)
        if not isinstance(reply, dict) or not isinstance(reply.get("tool"), str):
            return ModelTurn(text=text, usage=usage, invalid=f"not a tool call: {text[:80]!r}")
        if reply["tool"] == FINISH:
            return ModelTurn(text=str(reply.get("answer", "")), usage=usage)
        arguments = reply.get("arguments")
        call = ToolCall(id=f"local_{time.monotonic_ns()}", name=reply["tool"],
                        arguments=arguments if isinstance(arguments, dict) else {})
        return ModelTurn(calls=(call,), usage=usage)
