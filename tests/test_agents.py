"""Agents: tools, the diagram environment and its tasks, LangGraph patterns, models, metrics, traces."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.anthropic_server import AnthropicServer, Reply, Status
from workbench import tracing
from workbench.agents import (
    AgentConfig,
    AgentModelError,
    ModelTurn,
    ScriptedModel,
    TaskFileError,
    Tool,
    ToolCall,
    diagram_environment,
    load_diagram_tasks,
    run_agents,
    run_tool,
    run_trial,
    same_diagram,
)
from workbench.agents.diagram import TASKS_PATH, apply_calls
from workbench.agents.metrics import (
    arguments_match,
    mean_pass_hat_k,
    pass_at_k,
    pass_hat_k,
    tool_call_accuracy,
    tool_name_accuracy,
    trajectory_match,
)
from workbench.agents.patterns import PATTERNS
from workbench.types import Usage

KEY = "sk-agents-test"


@pytest.fixture(scope="module")
def env():
    return diagram_environment()


def call(tool, **arguments):
    return ToolCall(id=f"c_{tool}", name=tool, arguments=arguments)


# --- tools --------------------------------------------------------------------------------------


def test_run_tool_turns_every_failure_into_an_error_result(env):
    tools = env.tool_map
    start = env.task("easy-01").start
    state, result = run_tool(tools, call("drop_table", name="x"), start)
    assert result.error == "unknown_tool" and "add_node" in result.content and state is start
    _, result = run_tool(tools, call("add_node", name="x", type="spaceship"), start)
    assert result.error == "invalid_arguments" and "type" in result.content
    _, result = run_tool(tools, call("add_node", type="cache"), start)
    assert result.error == "invalid_arguments" and "name" in result.content
    _, result = run_tool(tools, call("delete_node", name="nowhere"), start)
    assert result.error == "tool_error" and "nowhere" in result.content

    def broken(state, **arguments):
        raise ZeroDivisionError("boom")

    bad = Tool(name="broken", description="raises", input_schema={"type": "object"}, function=broken)
    _, result = run_tool({"broken": bad}, call("broken"), start)
    assert result.error == "tool_error" and "ZeroDivisionError" in result.content
    new, result = run_tool(tools, call("add_node", name="x", type="cache"), start)
    assert result.error is None and "x" in new["nodes"] and "x" not in start["nodes"]


def test_tools_never_mutate_the_state_they_are_given(env):
    start = env.task("hard-14").start
    before = json.dumps(start, sort_keys=True)
    apply_calls(start, env.task("hard-14").reference)
    assert json.dumps(start, sort_keys=True) == before


# --- the diagram task set -----------------------------------------------------------------------


def test_every_reference_sequence_reaches_its_goal(env):
    assert len(env.tasks) >= 40
    edits = sorted(len(t.reference) for t in env.tasks)
    assert edits[0] == 1 and edits[-1] >= 10
    assert {t.difficulty for t in env.tasks} == {"easy", "medium", "hard"}
    for task in env.tasks:
        final = apply_calls(task.start, task.reference)
        assert same_diagram(final, task.goal), task.id
        assert not same_diagram(task.start, task.goal), f"{task.id} asks for no change"


def test_same_diagram_is_graph_equality():
    a = {"nodes": {"x": {"type": "cache", "properties": {"a": 1, "b": 2}}, "y": {"type": "service", "properties": {}}},
         "edges": [{"source": "x", "target": "y", "label": ""}]}
    b = {"nodes": {"y": {"type": "service", "properties": {}}, "x": {"type": "cache", "properties": {"b": 2, "a": 1}}},
         "edges": [{"source": "x", "target": "y", "label": ""}]}
    assert same_diagram(a, b)
    relabelled = {**b, "edges": [{"source": "x", "target": "y", "label": "calls"}]}
    reversed_ = {**b, "edges": [{"source": "y", "target": "x", "label": ""}]}
    assert not same_diagram(a, relabelled) and not same_diagram(a, reversed_)


def _write(tmp_path, lines):
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_task_file_with_an_invalid_goal_is_refused_by_name(tmp_path, env):
    raw = json.loads(TASKS_PATH.read_text().splitlines()[0])
    raw["goal"]["edges"].append({"source": "web", "target": "ghost", "label": ""})
    with pytest.raises(TaskFileError, match=r"tasks.jsonl:1: task 'easy-01' has a goal that is not a valid diagram.*ghost"):
        load_diagram_tasks(_write(tmp_path, [json.dumps(raw)]))
    raw["goal"] = {"nodes": {"a": {"type": "teapot", "properties": {}}}, "edges": []}
    with pytest.raises(TaskFileError, match="teapot"):
        load_diagram_tasks(_write(tmp_path, [json.dumps(raw)]))
    with pytest.raises(TaskFileError, match=r":2: not valid JSON"):
        load_diagram_tasks(_write(tmp_path, ['{"id": "a", "instruction": "x", "start": {"nodes": {}, "edges": []}, '
                                             '"goal": {"nodes": {}, "edges": []}, "reference": []}', "{nope"]))
    with pytest.raises(TaskFileError, match="no task file"):
        load_diagram_tasks(tmp_path / "missing.jsonl")


# --- metrics (hand-computed) --------------------------------------------------------------------


def test_pass_hat_k_and_pass_at_k_by_hand():
    assert pass_hat_k(3, 2, 2) == pytest.approx(1 / 3)  # C(2,2)/C(3,2)
    assert pass_hat_k(3, 3, 3) == 1.0 and pass_hat_k(3, 2, 3) == 0.0
    assert pass_at_k(3, 1, 2) == pytest.approx(2 / 3)  # 1 - C(2,2)/C(3,2)
    assert pass_at_k(4, 0, 2) == 0.0
    assert mean_pass_hat_k({"a": [True, True], "b": [True, False]}, 2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="k=4"):
        pass_hat_k(3, 1, 4)


def test_tool_call_accuracy_and_argument_rules():
    ref = [call("add_node", name="a", type="cache"), call("add_edge", source="a", target="b")]
    assert tool_call_accuracy(ref, ref) == 1.0
    wrong_args = [call("add_node", name="a", type="queue"), call("add_edge", source="a", target="b")]
    assert tool_call_accuracy(wrong_args, ref) == 0.5 and tool_name_accuracy(wrong_args, ref) == 1.0
    extra = [*ref, call("get_diagram")]
    assert tool_call_accuracy(extra, ref) == pytest.approx(2 / 3)
    assert tool_call_accuracy([], ref) == 0.0 and tool_call_accuracy([], []) == 1.0
    more = [call("add_node", name="a", type="cache", properties={"x": 1}), ref[1]]
    assert tool_call_accuracy(more, ref) == 0.5
    assert tool_call_accuracy(more, ref, {"add_node": "subset"}) == 1.0
    assert arguments_match({"q": "x", "limit": 3}, {"q": "x"}, "subset")
    assert not arguments_match({"q": "y"}, {"q": "x"}, "subset") and arguments_match({"q": "y"}, {"q": "x"}, "name_only")


def test_trajectory_modes():
    a, b, c = call("add_node", name="a", type="cache"), call("add_node", name="b", type="cache"), call("get_diagram")
    ref = [a, b]
    assert trajectory_match([a, b], ref, "strict") and not trajectory_match([b, a], ref, "strict")
    assert trajectory_match([b, a], ref, "unordered") and not trajectory_match([b, a, c], ref, "unordered")
    assert trajectory_match([b], ref, "subset") and not trajectory_match([b, c], ref, "subset")
    assert trajectory_match([c, b, a], ref, "superset") and not trajectory_match([a], ref, "superset")


# --- patterns with the scripted reference -------------------------------------------------------


@pytest.mark.parametrize("pattern", PATTERNS)
def test_scripted_reference_solves_every_task_in_every_pattern(env, pattern):
    report = run_agents(env, AgentConfig(pattern=pattern, trials=1))
    summary = report.summary()
    assert summary["success_rate"] == 1.0, [t.task_id for t in report.trials if not t.success]
    assert summary["error_rate"] == 0.0 and summary["invalid_call_rate"] == 0.0
    if pattern != "baseline":
        assert summary["tool_call_accuracy"] == 1.0 and summary["trajectory_strict"] == 1.0
        steps = {t.task_id: t.llm_calls for t in report.trials}
        assert steps["easy-01"] < steps["hard-13"]


def test_parallel_tool_calls_run_in_one_turn(env):
    task = env.task("hard-06")
    result = run_trial(env, task, AgentConfig(pattern="react"), ScriptedModel(task.reference, batch=4))
    assert result.success and result.llm_calls == 4  # 10 calls in turns of 4, 4, 2, then the answer


class Looping:
    """Calls get_diagram forever."""

    def respond(self, request):
        return ModelTurn(calls=(call("get_diagram"),), usage=Usage(model="loop"))


def test_a_looping_model_stops_at_the_step_limit(env):
    result = run_trial(env, env.task("easy-01"), AgentConfig(pattern="react", max_steps=5), Looping())
    assert result.status == "step_limit" and not result.success and result.llm_calls == 5


class Sloppy:
    """An unknown tool, bad arguments, malformed output, then the right call."""

    def __init__(self):
        self.turn = 0

    def respond(self, request):
        self.turn += 1
        u = Usage(model="sloppy")
        if self.turn == 1:
            return ModelTurn(calls=(call("make_cache", name="orders_cache"),), usage=u)
        if self.turn == 2:
            return ModelTurn(calls=(call("add_node", name="orders_cache", kind="cache"),), usage=u)
        if self.turn == 3:
            return ModelTurn(text='{"tool": "add_no', invalid="malformed output", usage=u)
        if self.turn == 4:
            return ModelTurn(calls=(call("add_node", name="orders_cache", type="cache", properties={"engine": "redis"}),),
                             usage=u)
        return ModelTurn(text="done", usage=u)


def test_invalid_calls_are_counted_and_the_loop_goes_on(env):
    result = run_trial(env, env.task("easy-01"), AgentConfig(pattern="react"), Sloppy())
    assert result.success and result.status == "done"
    assert result.invalid_calls == 3 and result.attempted_calls == 4 and result.llm_calls == 5
    assert [e["error"] for e in result.events if e["kind"] == "tool"] == ["unknown_tool", "invalid_arguments", None]
    assert result.tool_call_accuracy == pytest.approx(1 / 3)


# --- human in the loop and checkpoints ----------------------------------------------------------


def test_approval_policies_decide_destructive_calls(env):
    task = env.task("easy-03")  # delete_node stripe
    approved = run_trial(env, task, AgentConfig(pattern="react", approval="approve_all"), ScriptedModel(task.reference))
    denied = run_trial(env, task, AgentConfig(pattern="react", approval="deny_all"), ScriptedModel(task.reference))
    assert approved.success and not denied.success
    assert [e["error"] for e in denied.events if e["kind"] == "tool"] == ["denied"]
    seen = []
    asked = run_trial(env, task, AgentConfig(pattern="react", approval="ask"), ScriptedModel(task.reference),
                      ask=lambda request: seen.append(dict(request)) or True)
    assert asked.success and seen == [{"tool": "delete_node", "arguments": {"name": "stripe"}}]
    off = run_trial(env, task, AgentConfig(pattern="react", approval="off"), ScriptedModel(task.reference),
                    ask=lambda request: pytest.fail("no review with approval='off'"))
    assert off.success


class Counting:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def respond(self, request):
        self.calls += 1
        return self.inner.respond(request)


def test_an_interrupted_trial_resumes_from_its_sqlite_checkpoint(env, tmp_path):
    from langgraph.checkpoint.sqlite import SqliteSaver

    task = env.task("medium-02")  # delete stripe (needs approval), add adyen, connect payments -> adyen
    config = AgentConfig(pattern="react", approval="ask")
    path = tmp_path / "checkpoints.sqlite"

    def walk_away(request):
        raise KeyboardInterrupt("reviewer left")

    first = Counting(ScriptedModel(task.reference))
    with pytest.raises(KeyboardInterrupt):
        run_trial(env, task, config, first, checkpointer=SqliteSaver(sqlite3.connect(path, check_same_thread=False)),
                  ask=walk_away, thread_id="t1")
    assert first.calls == 1
    second = Counting(ScriptedModel(task.reference))
    resumed = run_trial(env, task, config, second, thread_id="t1", ask=lambda request: True,
                        checkpointer=SqliteSaver(sqlite3.connect(path, check_same_thread=False)))
    assert resumed.success and second.calls == 3  # the first turn was not asked again
    again = Counting(ScriptedModel(task.reference))
    finished = run_trial(env, task, config, again, thread_id="t1", ask=lambda request: True,
                         checkpointer=SqliteSaver(sqlite3.connect(path, check_same_thread=False)))
    assert finished.success and again.calls == 0  # a finished thread is read back


# --- traces -------------------------------------------------------------------------------------


def test_every_llm_and_tool_call_is_a_span_of_the_task_trace(env, tmp_path):
    store = tracing.enable_tracing(tmp_path / "runs.sqlite", otlp=False)
    try:
        task = env.task("medium-01")
        run_trial(env, task, AgentConfig(pattern="react"), ScriptedModel(task.reference))
        tracing.flush()
        (trace,) = store.traces()
        spans = store.spans(trace.trace_id)
        assert tracing.trace_metrics(store).tool_call_accuracy == 1.0
    finally:
        tracing.disable_tracing()
    names = [s.name for s in sorted(spans, key=lambda s: s.start_s)]
    assert names == ["agent", "llm", "tool", "llm", "tool", "llm"]
    root = next(s for s in spans if s.name == "agent")
    assert all(s.parent_id == root.span_id for s in spans if s is not root)
    tools = [s.attributes for s in spans if s.name == "tool"]
    assert tools[0]["workbench.tool.tool"] == "add_node"
    assert json.loads(tools[1]["workbench.tool.arguments"]) == {"source": "orders", "target": "orders_cache"}
    assert tools[0]["workbench.tool.result_chars"] > 0
    assert root.attributes["workbench.agent.success"] is True


# --- Claude through the local Messages server ---------------------------------------------------


def _claude_responder(plan):
    """Replies with the next scripted tool calls, then a summary."""
    def respond(body):
        made = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if made < len(plan):
            return Reply(text="Thought: next edit.", tool_calls=tuple(plan[made]))
        return Reply(text="All done.")
    return respond


@pytest.fixture
def server():
    with AnthropicServer(api_key=KEY) as s:
        yield s


def _claude(server, **kwargs):
    from workbench.agents.claude import ClaudeAgentModel

    return ClaudeAgentModel("claude-haiku-4-5", api_key=KEY, base_url=server.url, sleep=lambda s: None, **kwargs)


def test_claude_uses_native_tool_blocks_parallel_calls_and_caches_the_prefix(env, server):
    task = env.task("medium-01")
    server.responder = _claude_responder([[
        {"name": "add_node", "input": {"name": "orders_cache", "type": "cache", "properties": {"engine": "redis"}}},
        {"name": "get_diagram", "input": {}},
    ], [{"name": "add_edge", "input": {"source": "orders", "target": "orders_cache"}}]])
    result = run_trial(env, task, AgentConfig(pattern="react", model="claude-haiku-4-5"), _claude(server))
    assert result.success and result.llm_calls == 3 and len(result.calls) == 3
    bodies = [r.body for r in server.requests]
    assert [t["name"] for t in bodies[0]["tools"]][:2] == ["add_node", "delete_node"]
    assert "cache_control" in bodies[0]["tools"][-1] and "cache_control" in bodies[0]["system"][-1]
    second = bodies[1]["messages"]
    assert [b["type"] for b in second[1]["content"]] == ["text", "tool_use", "tool_use"]
    results = second[2]["content"]
    assert [b["type"] for b in results] == ["tool_result", "tool_result"]
    assert [b["tool_use_id"] for b in results] == [b["id"] for b in second[1]["content"][1:]]
    usages = [r.usage for r in server.requests]
    assert usages[0]["cache_creation_input_tokens"] > 0 and usages[1]["cache_read_input_tokens"] > 0
    llm = [e for e in result.events if e["kind"] == "llm"]
    assert llm[1]["cache_read_tokens"] == usages[1]["cache_read_input_tokens"] and llm[0]["cost_usd"] > 0
    assert all(e["ttft_s"] is not None and e["ttft_s"] <= e["latency_s"] for e in llm)


def test_an_api_fault_is_retried_then_fails_only_its_task(env, server):
    server.responder = _claude_responder([[{"name": "add_node", "input": {"name": "alerts", "type": "monitoring"}}]])
    server.script(Status(529), Status(500), Status(529), Status(529))  # 3 attempts fail the first task; the 4th fault is retried away
    config = AgentConfig(pattern="react", model="claude-haiku-4-5", tasks=("easy-09", "easy-11"))
    report = run_agents(env, config, model=_claude(server, max_retries=2))
    first, second = report.trials
    assert first.status == "error" and "529" in first.error and not first.success
    assert second.status == "done" and not second.success  # ran (the responder adds alerts, not frontend)
    with pytest.raises(AgentModelError, match="401"):
        from workbench.agents.claude import ClaudeAgentModel
        from workbench.agents.models import ModelRequest

        ClaudeAgentModel("claude-haiku-4-5", api_key="wrong", base_url=server.url).respond(
            ModelRequest(system="s", messages=[{"role": "user", "content": "hi"}]))



# --- the run store and the command line ---------------------------------------------------------


def test_cli_prints_snake_case_figures_and_stores_trials_once(tmp_path, capsys):
    from workbench.cli import main
    from workbench.evaluation.agents import agent_runs, checkpoint_path, load_agent_report
    from workbench.store import RunStore

    store = tmp_path / "runs.sqlite"
    argv = ["agents", "--env", "diagram", "--pattern", "react", "--model", "scripted", "--trials", "2",
            "--tasks", "easy-01,hard-13", "--json", "--store", str(store)]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    for field in ("success_rate", "pass_hat_k", "tool_call_accuracy", "invalid_call_rate", "mean_steps",
                  "cost_per_task_usd", "p50_s", "p95_s"):
        assert field in first
    assert first["success_rate"] == 1.0 and first["trials"] == 4 and first["mean_steps"] == (2 + 13) / 2
    assert checkpoint_path(store).is_file()
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["p50_s"] == first["p50_s"]  # the stored trials were read back, not rerun
    rows = RunStore(store).db.read("SELECT COUNT(*) FROM agent_trials")
    assert rows == [(4,)]
    runs = agent_runs(store)
    assert len(runs) == 2 and set(runs["pattern"]) == {"react"}
    report = load_agent_report(second["run_id"], store)
    assert report.summary()["success_rate"] == 1.0 and len(report.trials) == 4
    from workbench.agents import AgentConfig as Config
    from workbench.evaluation.agents import trial_checkpoints

    steps = trial_checkpoints(Config(pattern="react", trials=2, tasks=("easy-01", "hard-13")), "hard-13", 1,
                              store=store)
    assert steps["llm_calls"].is_monotonic_increasing and steps["tool_calls"].iloc[-1] == 12
    assert steps["status"].iloc[-1] == "done" and steps["next"].iloc[-1] == ""
    assert main(["agents", "--tasks", "nope", "--store", str(store)]) == 2
    assert "unknown task ids ['nope']" in capsys.readouterr().err


# --- the documents environment ------------------------------------------------------------------


@pytest.fixture(scope="module")
def library():
    from workbench.agents.documents import documents_environment
    from workbench.datasets import Dataset
    from workbench.types import Document, Span

    docs = (
        Document(id="d1", text="Supersonic wings need thin airfoils to delay shock waves.", metadata={"kind": "aero"}),
        Document(id="d2", text="Boundary layers thicken downstream of the leading edge.", metadata={"kind": "aero"}),
        Document(id="d3", text="Bread rises because yeast makes carbon dioxide.", metadata={"kind": "food"}),
    )
    data = Dataset(name="tiny", documents=docs,
                   queries={"q1": "why are supersonic wings thin", "q2": "why does bread rise"},
                   spans={"q1": (Span(doc_id="d1", start=0, end=40),), "q2": (Span(doc_id="d3", start=0, end=30),)})
    return documents_environment(data)


def test_documents_tasks_succeed_only_when_a_relevant_document_is_cited(library):
    report = run_agents(library, AgentConfig(env="documents", pattern="react"))
    assert report.summary()["success_rate"] == 1.0 and {t.task_id for t in report.trials} == {"q1", "q2"}
    q1 = library.task("q1")
    assert library.check(q1, q1.start, "Thin airfoils delay shocks [d1].")
    assert not library.check(q1, q1.start, "Yeast [d3].") and not library.check(q1, q1.start, "no citation")
    baseline = run_agents(library, AgentConfig(env="documents", pattern="baseline"))
    assert baseline.summary()["success_rate"] == 0.0


def test_documents_search_filters_and_read_errors(library):
    tools = library.tool_map
    _, found = run_tool(tools, call("search_documents", query="wings bread", limit=5, filter={"kind": "food"}), {"seen": []})
    assert {hit["doc_id"] for hit in json.loads(found.content)} == {"d3"}
    _, missing = run_tool(tools, call("read_document", id="d9"), {"seen": []})
    assert missing.error == "tool_error" and "d9" in missing.content
    _, bad = run_tool(tools, call("search_documents", query="x", limit=0), {"seen": []})
    assert bad.error == "invalid_arguments"


# --- the local Gemma (one model load for the module) --------------------------------------------


@pytest.fixture(scope="module")
def gemma():
    pytest.importorskip("llama_cpp", reason="the local extra (llama-cpp-python) is not installed")
    from workbench.agents import LocalAgentModel

    return LocalAgentModel(max_tokens=96)


@pytest.mark.slow
def test_gemma_replies_with_a_schema_valid_call_or_finish(gemma, env):
    from workbench.agents.models import ModelRequest
    from workbench.agents.patterns import initial_state

    task = env.task("easy-09")
    gemma.example = env.example
    turn = gemma.respond(ModelRequest(system=env.system, messages=initial_state(env, task)["messages"], tools=env.tools))
    assert turn.invalid is None and turn.usage.input_tokens > 100 and turn.usage.output_tokens > 0
    for made in turn.calls:  # the grammar admits only offered tools with schema-valid arguments
        _, result = run_tool(env.tool_map, made, task.start)
        assert result.error in (None, "tool_error")


@pytest.mark.slow
def test_gemma_output_cut_off_is_an_invalid_turn_not_a_crash(gemma, env):
    from workbench.agents.models import LocalAgentModel

    short = LocalAgentModel(max_tokens=3)  # the same loaded model; the JSON cannot close in 3 tokens
    task = env.task("easy-09")
    result = run_trial(env, task, AgentConfig(pattern="react", max_steps=1, model="local"), short)
    assert result.status == "step_limit" and result.invalid_calls == 1 and result.llm_calls == 1
    assert all("malformed" in e["invalid"] for e in result.events if e["kind"] == "llm")


# --- figures and the app page -------------------------------------------------------------------


def test_timeline_and_diagram_figures(env):
    from workbench.agents.diagram import apply_calls
    from workbench.plots.agents import diagram_layout, diagrams_figure, trial_timeline_frame

    task = env.task("medium-01")
    trial = run_trial(env, task, AgentConfig(pattern="react"), ScriptedModel(task.reference))
    frame = trial_timeline_frame(trial)
    assert list(frame["kind"]) == ["llm", "tool", "llm", "tool", "llm"] and frame["start_s"].is_monotonic_increasing
    half = apply_calls(task.start, task.reference[:1])  # the cache node, not its edge
    fig = diagrams_figure(half, task.goal)
    red = "#E45756"
    edge_colours = [t.line.color for t in fig.data if t.mode == "lines"]
    assert edge_colours.count(red) == 1  # only the goal's orders -> orders_cache edge is missing
    pos = diagram_layout(task.start)
    assert pos["web"][0] < pos["api"][0] < pos["orders"][0] < pos["orders_db"][0]


def test_agents_page_runs_and_shows_a_trial(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WORKBENCH_STORE", str(tmp_path / "runs.sqlite"))
    page = Path(__file__).resolve().parents[1] / "pages" / "2_Agents.py"
    at = AppTest.from_file(str(page), default_timeout=120).run()
    assert not at.exception
    at.multiselect(key="agents_tasks_diagram").set_value(["easy-03", "medium-02"])
    at.selectbox(key="agents_approval").set_value("deny_all")
    at.button(key="agents_run").click().run()
    assert not at.exception
    assert [m.value for m in at.metric][0] == "0%"  # both tasks delete a node, and deletes are denied
    assert len(at.get("plotly_chart")) == 2 and len(at.dataframe) == 2
