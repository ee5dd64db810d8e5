"""Synthetic evaluation sets against real parts: Claude over the local Messages API server, Gemma."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from anthropic_server import AnthropicServer  # noqa: E402

from workbench.chunking import make_chunker  # noqa: E402
from workbench.config import ChunkingConfig, GenerationConfig, PipelineConfig, RetrievalConfig  # noqa: E402
from workbench.datasets import Dataset, load_dataset  # noqa: E402
from workbench.experiment import run_experiment  # noqa: E402
from workbench.synthetic import (  # noqa: E402
    SYNTHETIC_SUFFIX,
    build_synthetic_set,
    clean_question,
    generate_questions,
    is_synthetic,
    load_questions,
    make_question_writer,
)
from workbench.types import Document  # noqa: E402

KEY = "sk-ant-test-synthetic-0123"
DOCS = {
    "wings.md": "# Wings\nSwept wings delay the onset of compressibility drag at high subsonic speeds. "
                "The sweep angle reduces the velocity component normal to the leading edge, so shock "
                "waves form later and the drag rise moves to a higher Mach number.",
    "heat.txt": "Heat transfer to a blunt body peaks at the stagnation point in hypersonic flow. "
                "The stagnation heating rate falls with the square root of the nose radius, which is "
                "why re-entry vehicles have blunt noses rather than sharp ones.",
    "short.txt": "Too short to ask about.",
}


@pytest.fixture(scope="module")
def corpus() -> Dataset:
    documents = tuple(Document(id=k, text=v) for k, v in DOCS.items())
    return Dataset(name="kb", documents=documents, queries={})


@pytest.fixture(scope="module")
def chunks(corpus):
    chunker = make_chunker(ChunkingConfig(method="recursive", size=24, overlap=0, tokenizer="whitespace"))
    return tuple(c for doc in corpus.documents for c in chunker.chunk(doc))


@pytest.fixture(scope="module")
def server():
    with AnthropicServer(api_key=KEY) as s:
        yield s


@pytest.fixture
def claude(server, monkeypatch) -> GenerationConfig:
    server.reset()
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    return GenerationConfig(kind="anthropic", base_url=server.url, max_retries=0, timeout_s=5.0)


def passage_of(body) -> str:
    return body["messages"][-1]["content"].removeprefix("Passage:\n")


@pytest.mark.parametrize(
    ("raw", "question"),
    [
        (" What is the stagnation point", ""),  # no question mark: not a question
        (" what delays compressibility drag? It is the sweep.", "What delays compressibility drag?"),
        ('Question 1: "Why are noses blunt?"\nWhy else?', "Why are noses blunt?"),
        ("\n\n1. How does sweep change the drag rise?", "How does sweep change the drag rise?"),
        ("Why?", ""),
        ("???", ""),
        ("", ""),
    ],
)
def test_clean_question_keeps_the_first_real_question(raw, question):
    assert clean_question(raw) == question


def test_questions_are_tied_to_the_exact_span_the_writer_was_shown(corpus, chunks, claude, server):
    server.responder = lambda body: f"What does this say about {max(passage_of(body).split(), key=len)}?"
    steps: list[tuple[int, int]] = []
    built = generate_questions(corpus, chunks, make_question_writer(claude), n=3, seed=7,
                               progress=lambda done, total: steps.append((done, total)))
    assert built.name == "kb" + SYNTHETIC_SUFFIX and is_synthetic(built) and not is_synthetic(corpus)
    assert list(built.queries) == ["1", "2", "3"] == built.evaluated_queries
    shown = [passage_of(r.body) for r in server.requests]
    assert len(shown) == 3 and steps == [(1, 4), (2, 4), (3, 4)]  # 4 eligible chunks, stopped at 3 kept
    texts = {d.id: d.text for d in corpus.documents}
    for qid, passage in zip(built.queries, shown):
        (span,) = built.spans[qid]
        assert texts[span.doc_id][span.start:span.end] == passage
        assert any(c.doc_id == span.doc_id and c.start <= span.start and span.end <= c.end for c in chunks)
        assert built.qrels[qid] == {span.doc_id: 1}
        assert built.queries[qid] == f"What does this say about {max(passage.split(), key=len)}?"
    assert "short.txt" not in {s.doc_id for sp in built.spans.values() for s in sp}  # under 12 words
    system = server.requests[0].body["system"][0]["text"]
    assert "one short, specific question" in system
    again = generate_questions(corpus, chunks, make_question_writer(claude), n=3, seed=7)
    assert again.spans == built.spans  # the seed fixes the sample


def test_degenerate_invented_and_repeated_questions_are_dropped(corpus, chunks, claude, server):
    replies = iter(["I cannot write a question about this.", "What is the capital of France?", "{}",
                    "What does the passage say?"])
    server.responder = lambda body: next(replies).format(
        f"Where does {max(passage_of(body).split(), key=len)} come in?")
    built = generate_questions(corpus, chunks, make_question_writer(claude), n=2, seed=0)
    shown = [passage_of(r.body) for r in server.requests]
    assert len(shown) == 4  # the cap: 2 * n chunks tried
    assert list(built.queries.values()) == [f"Where does {max(shown[2].split(), key=len)} come in?"]
    server.reset()
    server.responder = lambda body: "Which drag moves with the sweep of the wing and the heat?"  # grounded in all
    assert list(generate_questions(corpus, chunks, make_question_writer(claude), n=3).queries) == ["1"]
    texts = {d.id: d.text for d in corpus.documents}
    assert texts[built.spans["1"][0].doc_id][built.spans["1"][0].start:built.spans["1"][0].end] == shown[2]
    server.reset()
    server.responder = lambda body: "No."
    with pytest.raises(ValueError, match=r"produced no usable question from 4 chunks of 'kb'"):
        generate_questions(corpus, chunks, make_question_writer(claude), n=5)


def test_the_set_is_kept_beside_the_upload_and_read_back_instead_of_regenerated(corpus, chunks, claude, server,
                                                                               tmp_path):
    server.responder = lambda body: f"What is said of {max(passage_of(body).split(), key=len)}?"
    built, path = build_synthetic_set(corpus, chunks, claude, folder=tmp_path, n=2, seed=1)
    assert path.parent == tmp_path / "synthetic" and path.suffix == ".csv"
    assert len(server.requests) == 2
    header, *rows = path.read_text().splitlines()
    assert header == "question,references,corpus_id,generator"
    assert all(row.endswith("synthetic: Claude (claude-haiku-4-5)") for row in rows)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [path.name]  # no temporary file left
    again, same = build_synthetic_set(corpus, chunks, claude, folder=tmp_path, n=2, seed=1)
    assert same == path and len(server.requests) == 2  # nothing regenerated
    assert (again.name, dict(again.queries), dict(again.spans), dict(again.qrels)) == (
        built.name, dict(built.queries), dict(built.spans), dict(built.qrels))
    _, other = build_synthetic_set(corpus, chunks, claude, folder=tmp_path, n=1, seed=1)
    assert other != path and len(server.requests) == 3
    # the file is a questions.csv the folder loader reads as it is
    for name, text in DOCS.items():
        (tmp_path / "upload" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "upload" / name).write_text(text)
    shutil.copy(path, tmp_path / "upload" / "questions.csv")
    folder = load_dataset(tmp_path / "upload")
    assert dict(folder.queries) == dict(built.queries) and dict(folder.spans) == dict(built.spans)
    assert load_questions(folder, path).name == "upload" + SYNTHETIC_SUFFIX


def test_a_synthetic_set_is_scored_by_span_and_document(corpus, chunks, claude, server):
    server.responder = lambda body: f"What is said about {max(passage_of(body).split(), key=len)}?"
    built = generate_questions(corpus, chunks, make_question_writer(claude), n=3)
    config = PipelineConfig(chunking=ChunkingConfig(method="recursive", size=24, tokenizer="whitespace"),
                            retrieval=RetrievalConfig(kind="bm25", k=5))
    result = run_experiment(config, built)
    assert len(result.rows) == 3
    assert {"ndcg@10", "span_recall@5", "span_iou@5"} <= set(result.aggregates)
    assert result.aggregates["span_recall@5"] > 0


def test_the_extractive_generator_and_unknown_kinds_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"cannot write questions; pick generation.kind one of \['anthropic', "
                                         r"'local'\]"):
        make_question_writer(GenerationConfig(kind="extractive"))
    # An unknown kind is refused when the config is built (config.py), before any writer is picked.
    with pytest.raises(ValueError, match=r"unknown .*'gpt'; choose one of \[.*'anthropic'.*'local'"):
        make_question_writer(GenerationConfig(kind="gpt"))


def test_bad_inputs_name_the_fix(corpus, chunks, claude):
    writer = make_question_writer(claude)
    with pytest.raises(ValueError, match="n=0 must be positive"):
        generate_questions(corpus, chunks, writer, n=0)
    with pytest.raises(ValueError, match="is not characters"):
        generate_questions(corpus, [chunks[0].__class__(id="x", doc_id="wings.md", text="nope", start=0, end=4)],
                           writer, n=1)
    tiny = Dataset(name="tiny", documents=(Document(id="a", text="Just five words here ok"),), queries={})
    tiny_chunks = make_chunker(ChunkingConfig(method="none")).chunk(tiny.documents[0])
    with pytest.raises(ValueError, match="has 12 words or more to ask about; use larger chunks"):
        generate_questions(tiny, tiny_chunks, writer, n=1)


@pytest.mark.slow
def test_the_local_gemma_model_writes_questions_offline(corpus, chunks):
    config = GenerationConfig(kind="local", local_n_ctx=1024)
    built = generate_questions(corpus, chunks, make_question_writer(config), n=2, seed=3)
    assert 1 <= len(built.queries) <= 2
    for qid, question in built.queries.items():
        assert question.endswith("?") and len(question.split()) >= 3 and "\n" not in question
        (span,) = built.spans[qid]
        assert span.doc_id in ("wings.md", "heat.txt")
