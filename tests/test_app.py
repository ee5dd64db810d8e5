"""The Streamlit app driven by AppTest: bundled data, two configs, run, table, charts, drill-down,
runs stored and picked back from the history, uploads and TOML files (good, bad and hostile),
a failing config, and the playground with feedback stored on the trace."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
N_QUERIES = 30  # enough for the paired test to give a verdict (stats.MIN_QUERIES)


@pytest.fixture(scope="module", autouse=True)
def run_store(tmp_path_factory):
    """Every run the app stores goes to this module's temporary run store, never to data/runs.sqlite."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("runs") / "runs.sqlite"
        patch.setenv("WORKBENCH_STORE", str(path))
        yield path


@pytest.fixture
def store(tmp_path, monkeypatch):
    """Traces go to a temporary run store, never to the repo's data/runs.sqlite; tracing ends after."""
    from workbench import tracing

    path = tmp_path / "runs.sqlite"
    monkeypatch.setenv("WORKBENCH_STORE", str(path))
    yield path
    tracing.disable_tracing()


def start() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def run(at: AppTest) -> AppTest:
    at.button(key="run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> dict[str, dict]:
    """Each Plotly chart's figure as JSON, by title."""
    figures = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    return {f["layout"]["title"]["text"]: f for f in figures}


@pytest.fixture(scope="module")
def ran() -> AppTest:
    """Cranfield, config 1 = the bm25 preset, config 2 = the dense preset, 30 questions."""
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    at.number_input(key="data.n_queries").set_value(N_QUERIES)
    return run(at)


def test_presets_fill_two_columns_and_differences_are_highlighted(ran):
    assert ran.selectbox(key="cfg0.retrieval.kind").value == "bm25"
    assert ran.selectbox(key="cfg1.retrieval.kind").value == "dense"
    assert "≠" in ran.selectbox(key="cfg1.retrieval.kind").label
    assert "≠" not in ran.selectbox(key="cfg1.chunking.method").label  # both presets keep whole documents
    differs = [m.value for m in ran.markdown if "Differs from config 1" in m.value]
    assert len(differs) == 1 and "`retrieval.kind` 'bm25' → **'dense'**" in differs[0]


def test_run_shows_the_metric_table_with_intervals(ran):
    assert [s.value.split(",")[0] for s in ran.success] == [f"{N_QUERIES} queries"] * 2
    table = ran.dataframe[0].value
    assert list(table.index) == ["1. bm25", "2. dense"]
    cell = table.loc["2. dense", "ndcg@10"]
    mean, low, high = (float(x) for x in cell.replace("[", "").replace("]", "").replace(",", "").split()[:3])
    assert low <= mean <= high
    summary = ran.dataframe[1].value
    assert set(summary["n"]) == {N_QUERIES}
    ran_results = ran.session_state["outcomes"]
    assert summary.set_index(["config", "metric"]).loc[("1. bm25", "ndcg@10"), "mean"] == pytest.approx(
        ran_results["1. bm25"].result.aggregates["ndcg@10"])


def test_run_draws_cost_quality_latency_and_monthly_charts(ran):
    figures = charts(ran)
    assert set(figures) == {"Cost per 1,000 queries", "Monthly cost (300,000 queries)", "ndcg@10 against cost",
                            "Latency per query by stage (ms)", "Cost per month, lever by lever"}
    cost = figures["Cost per 1,000 queries"]
    assert [t["name"] for t in cost["data"] if t["type"] == "bar"] == [
        "Uncached input", "Cache writes", "Cache reads", "Output"]
    assert cost["data"][0]["x"] == ["1. bm25", "2. dense"]
    pareto = figures["ndcg@10 against cost"]
    assert any(t.get("name") == "Pareto frontier" for t in pareto["data"])
    latency = figures["Latency per query by stage (ms)"]
    stages = {a["text"] for a in latency["layout"]["annotations"]}
    embed = stages & {"embed", "embed_cached"}  # the dense config's query embedding, computed or read
    assert embed and stages - embed == {"retrieve", "total"}


def test_monthly_cost_follows_the_workload(ran):
    before = charts(ran)["Monthly cost (300,000 queries)"]
    ran.number_input(key="wl.qpd").set_value(20_000).run()
    after = charts(ran)["Monthly cost (600,000 queries)"]
    for b, a in zip(before["data"], after["data"]):
        if b["type"] == "bar":
            assert a["y"][0] == pytest.approx(2 * b["y"][0])
    ran.number_input(key="wl.qpd").set_value(10_000).run()


def test_drilldown_shows_each_configs_hits_and_relevant_documents(ran):
    qid = ran.selectbox(key="drill.query").options[3].split(":")[0]
    ran.selectbox(key="drill.query").set_value(qid).run()
    found = [m.value for m in ran.markdown if m.value.startswith("Relevant documents found")]
    assert len(found) == 2
    hits = [m.value for m in ran.markdown if m.value.startswith("**#")]
    assert len(hits) == 2 * 5 and hits[0].startswith("**#1** · score")
    row = next(r for r in ran.session_state["outcomes"]["2. dense"].result.rows if r.query_id == qid)
    assert f"`{row.retrieved[0]}`" in hits[5]


def test_changing_only_k_reruns_without_embedding(ran):
    ran.number_input(key="cfg1.retrieval.k").set_value(50)
    run(ran)
    outcome = ran.session_state["outcomes"]["2. dense"]
    assert outcome.result.config.retrieval.k == 50 and not outcome.reused
    assert outcome.embedded == 0 and outcome.result.embedding_stats["misses"] == 0
    assert "embedded 0 new texts" in ran.success[1].value


def test_overlap_not_below_size_is_an_error_in_its_column_and_the_other_runs():
    at = start()
    at.number_input(key="data.n_queries").set_value(5)
    at.selectbox(key="cfg1.retrieval.kind").set_value("bm25")
    at.selectbox(key="cfg1.chunking.method").set_value("fixed")
    at.number_input(key="cfg1.chunking.size").set_value(64)
    at.number_input(key="cfg1.chunking.overlap").set_value(64).run()
    assert any("overlap=64 must be >= 0 and < chunking.size=64" in e.value for e in at.error)
    run(at)
    assert list(at.session_state["outcomes"]) == ["1. bm25"]
    assert len(at.success) == 1


def test_a_failing_run_shows_its_error_and_the_other_config_still_runs():
    at = start()
    at.number_input(key="data.n_queries").set_value(5)
    at.selectbox(key="cfg1.retrieval.kind").set_value("bm25")
    at.selectbox(key="cfg1.reranking.kind").set_value("trained")
    run(at)
    errors = [e.value for e in at.error if e.value.startswith("Run failed")]
    assert len(errors) == 1 and "reranking.kind='trained' needs reranking.model" in errors[0]
    assert at.session_state["outcomes"]["1. bm25"].result is not None
    assert len(at.dataframe) >= 1 and list(at.dataframe[0].value.index) == ["1. bm25"]


def test_toml_round_trip_loads_into_a_column():
    at = start()
    toml = b'name = "mine"\n[chunking]\nmethod = "fixed"\nsize = 128\noverlap = 16\n[retrieval]\nkind = "bm25"\nk = 7\n'
    at.file_uploader(key="cfg1.toml").set_value(("mine.toml", toml, "application/toml")).run()
    assert at.text_input(key="cfg1.name").value == "mine"
    assert at.number_input(key="cfg1.chunking.size").value == 128
    assert at.number_input(key="cfg1.retrieval.k").value == 7
    at.file_uploader(key="cfg0.toml").set_value(("bad.toml", b"[chunking]\nsize = 'big'\n", "application/toml")).run()
    assert any("bad.toml was not loaded" in e.value and "chunking.size" in e.value for e in at.error)
    assert not at.exception


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.txt", b"", "is empty"),
        ("corrupt.zip", b"PK\x03\x04garbage", "not a readable zip"),
        ("climb.zip", zip_bytes({"ok.txt": b"fine", "../../outside.txt": b"pwned"}), "points outside"),
    ],
)
def test_bad_uploads_show_an_error_in_place_and_write_nothing(tmp_path, monkeypatch, name, data, message):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    at = start()
    at.radio(key="data.source").set_value("upload").run()
    at.file_uploader(key="data.files").set_value([(name, data, "application/octet-stream")]).run()
    assert not at.exception
    assert any(message in e.value for e in at.error)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []
    at.radio(key="data.source").set_value("cranfield").run()  # the app keeps working
    assert not at.exception and at.button(key="run")


@pytest.mark.slow
def test_a_200_mb_upload_is_refused_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    at = start()
    at.radio(key="data.source").set_value("upload").run()
    at.file_uploader(key="data.files").set_value([("big.txt", bytes(200 * 2**20 + 1), "text/plain")]).run()
    assert any("over the 200 MB limit" in e.value for e in at.error)
    assert not at.exception and not (tmp_path / "cache" / "uploads").exists()


@pytest.mark.slow
def test_upload_without_questions_indexes_and_answers_with_feedback_on_the_trace(tmp_path, monkeypatch, store):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    at = start()
    at.radio(key="data.source").set_value("upload").run()
    docs = zip_bytes({
        "kb/wings.md": b"# Wings\nSwept wings delay the onset of compressibility drag at high subsonic speeds.",
        "kb/heat.txt": b"Heat transfer to a blunt body peaks at the stagnation point in hypersonic flow.",
    })
    at.file_uploader(key="data.files").set_value([("kb.zip", docs, "application/zip")]).run()
    assert not at.exception and not at.error
    assert any("No questions" in i.value for i in at.sidebar.info)
    uploads = tmp_path / "cache" / "uploads"
    assert {p.name for p in uploads.rglob("*") if p.is_file()} == {"wings.md", "heat.txt"}
    run(at)
    assert at.success[0].value.startswith("0 queries, 2 chunks")
    at.text_input(key="pg.question").set_value("Where does heat transfer peak?").run()
    at.button(key="pg.ask").click().run()
    assert not at.exception and not at.error
    answer = at.session_state["answer"]
    assert "stagnation point" in answer["response"].answer.text
    assert answer["response"].answer.citations[0] == answer["response"].hits[0].chunk.id
    assert any(m.label == "Time to first token" for m in at.metric)
    assert answer["trace_id"] and f"Trace `{answer['trace_id']}`" in [c.value for c in at.caption]
    at.feedback(key="pg.feedback").set_value(0).run()  # 0 is thumbs down
    assert not at.exception

    from workbench.tracing import TraceStore

    traces = TraceStore(store)
    assert [f.score for f in traces.feedback(answer["trace_id"])] == [-1]
    trace = traces.trace(answer["trace_id"])  # one request span from Pipeline.answer, with its answer recorded
    assert trace.operation == "answer" and "stagnation point" in trace.answer
    spans = traces.spans(answer["trace_id"])
    assert [s.name for s in spans if s.parent_id is None] == ["answer"]
    assert {"retrieve", "generate"} <= {s.name for s in spans}


def test_the_batch_share_is_part_of_the_config_and_lowers_its_cost(ran):
    before = charts(ran)["Cost per 1,000 queries"]
    ran.slider(key="cfg1.generation.batch_share").set_value(1.0)
    run(ran)
    assert "≠" in ran.slider(key="cfg1.generation.batch_share").label
    assert ran.session_state["outcomes"]["2. dense"].config.generation.batch_share == 1.0
    after = charts(ran)["Cost per 1,000 queries"]
    for b, a in zip(before["data"], after["data"]):
        if b["type"] == "bar":  # haiku's batch discount halves config 2's cost, config 1's stays
            assert a["y"] == pytest.approx([b["y"][0], b["y"][1] / 2])
    ran.slider(key="cfg1.generation.batch_share").set_value(0.0)
    run(ran)


def test_the_lever_waterfall_labels_each_lever_measured_or_assumed(ran):
    waterfall = charts(ran)["Cost per month, lever by lever"]["data"][0]
    assert waterfall["x"][1:-1] == ["routing<br>(assumed)", "prompt caching<br>(assumed)", "batch<br>(assumed)",
                                    "response cache<br>(assumed)"]  # no traced traffic in this run store
    levers = next(c.value for c in ran.caption if c.value.startswith("Levers of"))
    assert "response cache assumed 0%" in levers and "prompt caching assumed 80%" in levers


def test_a_toml_with_a_batch_share_loads_it_and_a_bad_one_is_refused():
    at = start()
    toml = b'name = "batched"\n[generation]\nbatch_share = 0.4\n'
    at.file_uploader(key="cfg1.toml").set_value(("batched.toml", toml, "application/toml")).run()
    assert at.slider(key="cfg1.generation.batch_share").value == 0.4
    assert any("`generation.batch_share` 0.0 → **0.4**" in m.value for m in at.markdown)
    bad = b"[generation]\nbatch_share = 1.5\n"
    at.file_uploader(key="cfg0.toml").set_value(("bad.toml", bad, "application/toml")).run()
    assert any("bad.toml was not loaded" in e.value and "batch_share=1.5 must lie in [0, 1]" in e.value
               for e in at.error)


KB = {
    "kb/wings.md": b"# Wings\nSwept wings delay the onset of compressibility drag at high subsonic speeds. The sweep "
                   b"angle reduces the velocity component normal to the leading edge, so the drag rise moves to a "
                   b"higher Mach number.",
    "kb/heat.txt": b"Heat transfer to a blunt body peaks at the stagnation point in hypersonic flow. The heating "
                   b"rate falls with the square root of the nose radius, which is why re-entry vehicles have blunt "
                   b"noses.",
}


def upload_kb(tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    at = start()
    at.radio(key="data.source").set_value("upload").run()
    at.file_uploader(key="data.files").set_value([("kb.zip", zip_bytes(KB), "application/zip")]).run()
    assert not at.exception and not at.error
    return at


def test_a_synthetic_set_that_cannot_be_built_says_why_in_place(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    at = upload_kb(tmp_path, monkeypatch)
    at.selectbox(key="syn.kind").set_value("anthropic")
    at.button(key="syn.build").click().run()
    assert not at.exception
    assert any(e.value.startswith("No synthetic set was built: MissingAPIKeyError") for e in at.error)
    assert not list((tmp_path / "cache" / "uploads").rglob("synthetic"))
    assert at.button(key="syn.build") and at.button(key="run")  # the offer stays, the app keeps working


@pytest.mark.slow
def test_an_upload_without_questions_gets_a_labelled_synthetic_set_from_gemma(tmp_path, monkeypatch):
    at = upload_kb(tmp_path, monkeypatch)
    assert at.selectbox(key="syn.kind").value == "local"
    at.number_input(key="syn.n").set_value(2)
    at.button(key="syn.build").click().run()
    assert not at.exception and not at.error
    (saved,) = (tmp_path / "cache" / "uploads").rglob("synthetic/questions-*.csv")
    assert any("synthetic questions" in m.value and "Gemma 3 270M" in m.value for m in at.sidebar.markdown)
    assert any("judged questions" in c.value and "(synthetic questions)" in c.value for c in at.sidebar.caption)
    n = at.number_input(key="data.n_queries").value
    assert 1 <= n <= 2
    run(at)
    assert any(i.value.startswith(":violet-badge[synthetic questions]") for i in at.info)
    assert [s.value.split(",")[0] for s in at.success] == [f"{n} queries"] * 2
    result = at.session_state["outcomes"]["1. bm25"].result
    assert "span_recall@5" in result.aggregates and all(r.query.endswith("?") for r in result.rows)
    written = saved.stat().st_mtime_ns
    again = upload_kb(tmp_path, monkeypatch)  # a new session builds the same set again: read back, not rewritten
    again.number_input(key="syn.n").set_value(2)
    again.button(key="syn.build").click().run()
    assert not again.exception and again.number_input(key="data.n_queries").value == n
    assert saved.stat().st_mtime_ns == written
    again.button(key="syn.discard").click().run()
    assert again.button(key="syn.build") and "data.n_queries" not in [w.key for w in again.number_input]


def test_every_run_is_stored_and_an_identical_one_is_served_from_the_store(run_store):
    from workbench.store import RunStore

    first = start()
    first.number_input(key="data.n_queries").set_value(4)
    first.selectbox(key="cfg1.retrieval.kind").set_value("hybrid")
    outcomes = run(first).session_state["outcomes"]
    with RunStore(run_store) as store:
        stored = {r.id: r for r in store.runs()}
    for label, o, shown in zip(outcomes, outcomes.values(), first.success):
        assert o.run_id in stored and stored[o.run_id].n_queries == 4 and not o.reused
        assert stored[o.run_id].aggregates["ndcg@10"] == pytest.approx(o.result.aggregates["ndcg@10"])
        assert f"stored as run {o.run_id}" in shown.value
    again = start()  # a new session asks for the same two runs: both come from the store
    again.number_input(key="data.n_queries").set_value(4)
    again.selectbox(key="cfg1.retrieval.kind").set_value("hybrid")
    run(again)
    for label, o in again.session_state["outcomes"].items():
        assert o.reused and o.run_id == outcomes[label].run_id
        assert o.result.aggregates == pytest.approx(dict(outcomes[label].result.aggregates))
    assert [s.value.endswith(f"served from the run store (run {o.run_id}, an identical request)")
            for s, o in zip(again.success, again.session_state["outcomes"].values())] == [True] * 2
    with RunStore(run_store) as store:
        assert len(store.runs()) == len(stored)  # nothing stored twice


def test_a_stored_run_is_a_column_to_compare_against_without_rerunning(ran):
    dense = ran.session_state["outcomes"]["2. dense"]
    at = start()  # a new session: nothing is run in it
    at.number_input(key="data.n_queries").set_value(N_QUERIES).run()
    picker = at.multiselect(key="history")
    assert any(f"dense · {N_QUERIES} queries" in o and dense.run_id[:8] in o for o in picker.options)
    picker.select(dense.run_id).run()
    assert not at.exception and at.session_state["outcomes"] == {}
    label = f"run {dense.run_id[:8]} · dense"
    summary = at.dataframe[1].value.set_index(["config", "metric"])
    assert summary.loc[(label, "ndcg@10"), "mean"] == pytest.approx(dense.result.aggregates["ndcg@10"])
    assert list(at.dataframe[0].value.index) == [label]
    at.number_input(key="data.n_queries").set_value(5)  # the current runs then cover 5 questions only
    run(at)
    assert any(e.value.startswith("Not compared:") for e in at.error)  # said, not a wrong comparison
    assert at.multiselect(key="history").value == [dense.run_id]
    hits = [m.value for m in at.markdown if m.value.startswith("**#")]
    assert hits  # the drill-down shows the stored run's hits from its stored ranking
    picker = at.multiselect(key="history")
    picker.unselect(dense.run_id).run()
    assert list(at.dataframe[0].value.index) == ["1. bm25", "2. dense"]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("huge.toml", f"[chunking]\nsize = {2**60}\noverlap = 0\n".encode(), "chunking.size"),
        ("huge_k.toml", f"[retrieval]\nk = {2**53 + 1}\n".encode(), "retrieval.k"),
        ("binary.toml", b"\xff\xfe\x00\x01\x9c garbage", "UTF-8"),
        ("syntax.toml", b"[chunking\nsize = 3\n", "TOML"),
        ("nan.toml", b"[generation]\ntimeout_s = nan\n", "timeout_s"),
        ("inf.toml", b"[retrieval]\ndense_weight = inf\n", "dense_weight"),
        ("list.toml", b"[chunking]\nsize = [1, 2]\n", "chunking.size"),
        ("table.toml", b"chunking = 5\n", "chunking"),
        ("kind.toml", b'[generation]\nkind = "telepathy"\n', "generation.kind"),
    ],
)
def test_a_bad_toml_is_refused_in_place_and_the_session_keeps_working(name, data, message):
    at = start()
    before = at.number_input(key="cfg1.chunking.size").value, at.number_input(key="cfg1.retrieval.k").value
    at.file_uploader(key="cfg1.toml").set_value((name, data, "application/toml")).run()
    assert not at.exception
    assert any(f"{name} was not loaded" in e.value and message in e.value for e in at.error), \
        [e.value for e in at.error]
    assert (at.number_input(key="cfg1.chunking.size").value, at.number_input(key="cfg1.retrieval.k").value) == before
    at.number_input(key="data.n_queries").set_value(3)
    run(at)  # and on every rerun after it
    run(at)
    assert [s.value.split(",")[0] for s in at.success] == ["3 queries"] * 2


HEAT_QRELS = b"query-id\tcorpus-id\tscore\nq1\tkb/heat.txt\t1\n"


@pytest.mark.parametrize(
    ("questions", "message"),
    [
        ([("queries.jsonl", b"[1, 2]\n"), ("test.tsv", HEAT_QRELS)], "queries.jsonl"),
        ([("queries.jsonl", b'{"_id": "q1", "text": 5}\n'), ("test.tsv", HEAT_QRELS)], "queries.jsonl"),
        ([("queries.jsonl", b'{"_id": "q1", "text": "Where?"}\n{"_id": "q1", "text": "When?"}\n'),
          ("test.tsv", HEAT_QRELS)], "queries.jsonl"),
        ([("queries.jsonl", b'{"_id": "q1", "text": "Where?"}\n'), ("test.tsv", b"\xff\xfe\x00bad")], "test.tsv"),
        ([("questions.csv", b'question,references,corpus_id\n"' + b"x" * 300_000 + b'",[],kb/heat.txt\n')],
         "questions.csv"),
    ],
)
def test_bad_questions_are_refused_in_place_and_the_documents_stay_usable(tmp_path, monkeypatch, questions, message):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    at = start()
    at.radio(key="data.source").set_value("upload").run()
    at.file_uploader(key="data.files").set_value([("kb.zip", zip_bytes(KB), "application/zip")])
    at.file_uploader(key="data.questions").set_value([(n, d, "application/octet-stream") for n, d in questions]).run()
    assert not at.exception
    assert any(e.value.startswith("The questions were not used") and message in e.value for e in at.error), \
        [e.value for e in at.error]
    assert any("2 documents, 0 judged questions" in c.value for c in at.sidebar.caption)
    run(at)
    assert at.success[0].value.startswith("0 queries, 2 chunks")


def encrypted_pdf() -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt(user_password="secret", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [  # message: what the error in place (or the "Left out" note) says; None: the file is read after all
        ("x" * 300 + ".txt", b"a name over 255 bytes", "255"),
        ("nul.zip", zip_bytes({"nul\x00name.txt": b"a member name with a NUL"}), "nul (not one of"),
        ("both.zip", zip_bytes({"x.txt": b"a file", "x.txt/y.txt": b"and a file below it"}), "x.txt"),
        ("qfolder.zip", zip_bytes({"kb/a.txt": b"a document", "questions.csv/inner.txt": b"in a folder questions.csv"}),
         "questions.csv"),
        ("marked.html", b"<html><body><![if ! x<p>text after a malformed marked section</p>", None),
        ("cdata.html", b"<![CDATA[ never closed", "cdata.html"),
        ("locked.pdf", encrypted_pdf(), "locked.pdf"),
    ],
)
def test_hostile_documents_get_a_message_naming_the_file_and_the_app_keeps_working(tmp_path, monkeypatch, name,
                                                                                   data, message):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    at = start()
    at.radio(key="data.source").set_value("upload").run()
    at.file_uploader(key="data.files").set_value([(name, data, "application/octet-stream"),
                                                  ("ok.txt", b"Swept wings delay compressibility drag.", "text/plain")])
    at.run()
    assert not at.exception
    said = [e.value for e in at.error] + [c.value for c in at.sidebar.caption if c.value.startswith("Left out")]
    if message is None:
        assert not said and any("2 documents" in c.value for c in at.sidebar.caption)
    else:
        assert any(message in m for m in said), said
    at.radio(key="data.source").set_value("cranfield").run()
    assert not at.exception and at.button(key="run")


def test_a_newly_registered_kind_and_every_config_field_appear_without_editing_the_app(monkeypatch):
    from workbench.registry import REGISTRIES, Registry

    old = REGISTRIES["reranking.kind"]
    monkeypatch.setitem(REGISTRIES, "reranking.kind", Registry(
        "reranking.kind", {**{k: old.target(k) for k in old}, "echo": "my_package.echo:EchoReranker"}, extra=old.extra))
    at = start()
    assert "echo" in at.selectbox(key="cfg1.reranking.kind").options
    assert at.selectbox(key="cfg1.retrieval.backend").value == "faiss"  # under "More settings", from its registry
    at.selectbox(key="cfg1.reranking.kind").set_value("echo").run()
    assert not at.exception and not [e for e in at.error if "Invalid configuration" in e.value]
    assert any("`reranking.kind` 'none' → **'echo'**" in m.value for m in at.markdown)


def test_streamlit_started_in_the_project_runs_without_the_file_watcher():
    import subprocess
    import sys

    root = Path(APP).parent  # where `make run` and the browser tests start it
    shown = subprocess.run([sys.executable, "-m", "streamlit", "config", "show"], cwd=root, capture_output=True,
                           text=True, check=True, timeout=120).stdout.splitlines()
    assert 'fileWatcherType = "none"' in shown and "headless = true" in shown
