"""Dataset loaders on the bundled data and on folders written by the tests."""

from __future__ import annotations

import csv
import json
import pickle
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from hostile_files import minimal_pdf  # noqa: E402

from workbench.datasets import DatasetError, load_beir, load_dataset, load_folder, read_span_questions  # noqa: E402
from workbench.types import Document  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data"


def test_cranfield_loads_by_name(cranfield) -> None:
    assert len(cranfield.documents) == 1398  # 1,400 less the two empty records
    assert cranfield.skipped == ("471", "995")
    assert len(cranfield.queries) == 225
    assert sum(len(r) for r in cranfield.qrels.values()) == 1837
    doc = next(d for d in cranfield.documents if d.id == "1")
    assert doc.text.startswith("experimental investigation of the aerodynamics of a wing in a slipstream")
    assert doc.metadata["title"].startswith("experimental investigation")
    assert cranfield.fingerprint() == load_dataset("cranfield").fingerprint()


def test_chunking_set_spans_match_reference_text(chunking_set) -> None:
    assert {d.id for d in chunking_set.documents} == {"chatlogs", "state_of_the_union", "wikitexts"}
    assert len(chunking_set.queries) == 276
    texts = {d.id: d.text for d in chunking_set.documents}
    with open(DATA / "chunking" / "questions.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for n, row in enumerate(rows, 1):
        refs = json.loads(row["references"])
        spans = chunking_set.spans[str(n)]
        assert [texts[s.doc_id][s.start : s.end] for s in spans] == [r["content"] for r in refs]
        assert chunking_set.qrels[str(n)] == {row["corpus_id"]: 1}


def _beir(tmp_path: Path, corpus: list[dict], queries: list[dict], qrels: str) -> Path:
    (tmp_path / "qrels").mkdir(parents=True)
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus))
    (tmp_path / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return tmp_path


def test_beir_document_text_is_title_then_text(tmp_path: Path) -> None:
    path = _beir(
        tmp_path,
        [{"_id": "a", "title": "Wings", "text": "lift and drag"}, {"_id": "b", "title": "flow", "text": "flow at mach 2"}],
        [{"_id": "q", "text": "lift?"}],
        "q\ta\t2\n",
    )
    ds = load_beir(path)
    assert [d.text for d in ds.documents] == ["Wings lift and drag", "flow flow at mach 2"]
    assert ds.qrels == {"q": {"a": 2}}
    assert load_dataset(path).fingerprint() == ds.fingerprint()


@pytest.mark.parametrize(
    ("corpus", "queries", "qrels", "message"),
    [
        ([{"_id": "a", "text": "x"}], [{"_id": "q", "text": "x?"}], "q\tzz\t1\n", r"unknown documents \['zz'\]"),
        ([{"_id": "a", "text": "x"}], [{"_id": "q", "text": "x?"}], "q9\ta\t1\n", r"unknown queries \['q9'\]"),
        ([{"_id": "a", "text": "  "}], [{"_id": "q", "text": "x?"}], "q\ta\t1\n", r"document 'a' .* is empty; remove it or pass empty='skip'"),
        ([{"_id": "a", "text": "x"}], [{"_id": "q", "text": " "}], "q\ta\t1\n", r"query 'q' .* is empty"),
        ([{"_id": "a", "text": "x"}], [{"_id": "q", "text": "x?"}], "q\ta\tgood\n", r"integer score"),
    ],
)
def test_beir_bad_input_is_named(tmp_path: Path, corpus, queries, qrels, message) -> None:
    with pytest.raises(DatasetError, match=message):
        load_beir(_beir(tmp_path, corpus, queries, qrels))


def test_empty_documents_can_be_skipped_keeping_their_judgements(tmp_path: Path) -> None:
    path = _beir(tmp_path, [{"_id": "a", "text": "x"}, {"_id": "b", "text": ""}], [{"_id": "q", "text": "x?"}], "q\tb\t1\n")
    ds = load_beir(path, empty="skip")
    assert [d.id for d in ds.documents] == ["a"] and ds.skipped == ("b",)
    assert ds.qrels == {"q": {"b": 1}}


def test_folder_of_files_with_metadata(tmp_path: Path) -> None:
    (tmp_path / "guide").mkdir()
    (tmp_path / "guide" / "setup.md").write_text("# Setup\n\nInstall it.\n\n## Keys\n\nSet the key.\n")
    (tmp_path / "notes.txt").write_text("plain notes\n")
    (tmp_path / "page.html").write_text(
        "<html><head><title>Page</title><script>var x = 1;</script></head>"
        "<body><h2>Pricing</h2><p>Costs &amp; fees.</p></body></html>"
    )
    (tmp_path / "report.pdf").write_bytes(minimal_pdf("Quarterly revenue grew"))
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    ds = load_folder(tmp_path)
    docs = {d.id: d for d in ds.documents}
    assert set(docs) == {"guide/setup.md", "notes.txt", "page.html", "report.pdf"}
    assert docs["guide/setup.md"].metadata["headings"] == ["Setup", "Keys"]
    assert docs["guide/setup.md"].metadata["title"] == "Setup"
    assert docs["page.html"].metadata["title"] == "Page"
    assert docs["page.html"].metadata["headings"] == ["Pricing"]
    assert "var x" not in docs["page.html"].text and "Costs & fees." in docs["page.html"].text
    assert "Quarterly revenue grew" in docs["report.pdf"].text
    assert len(docs["notes.txt"].metadata["modified"]) == 10  # ISO date
    assert ds.queries == {}


def test_folder_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no documents in"):
        load_folder(tmp_path)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin1.txt is not UTF-8 .*re-save it as UTF-8"):
        load_folder(tmp_path)
    (tmp_path / "latin1.txt").unlink()
    (tmp_path / "blank.md").write_text("  \n")
    with pytest.raises(DatasetError, match="blank.md is empty"):
        load_folder(tmp_path)
    (tmp_path / "bad.pdf").write_bytes(b"not a pdf")
    (tmp_path / "blank.md").unlink()
    with pytest.raises(DatasetError, match="bad.pdf is not a readable PDF"):
        load_folder(tmp_path)


def test_unknown_dataset_name() -> None:
    with pytest.raises(DatasetError, match=r"no dataset 'msmarco': not a bundled name \(cranfield, chunking\)"):
        load_dataset("msmarco")


def test_subset_keeps_only_queries_judged_inside_it(chunking_set, cranfield) -> None:
    part = chunking_set.subset(["chatlogs", "state_of_the_union"])
    assert [d.id for d in part.documents] == ["chatlogs", "state_of_the_union"]
    assert part.name == "chunking[chatlogs,state_of_the_union]"
    assert part.fingerprint() != chunking_set.fingerprint()
    inside = {"chatlogs", "state_of_the_union"}
    expected = [q for q in chunking_set.evaluated_queries if {s.doc_id for s in chunking_set.spans[q]} <= inside]
    assert 0 < len(expected) < len(chunking_set.evaluated_queries)
    assert part.evaluated_queries == expected
    assert all(part.spans[q] == chunking_set.spans[q] for q in expected)

    # BEIR: a query with a relevant document outside the cut goes; grades inside are kept
    docs = [d.id for d in cranfield.documents[:300]]
    cut = cranfield.subset(docs)
    assert cut.queries and all(set(cut.qrels[q]) <= set(docs) for q in cut.queries)
    assert all({d for d, g in cranfield.qrels[q].items() if g > 0} <= set(docs) for q in cut.queries)


def test_subset_names_a_bad_document_id(chunking_set) -> None:
    with pytest.raises(DatasetError, match=r"unknown ids \['novels'\].*pick from \['chatlogs'"):
        chunking_set.subset(["chatlogs", "novels"])
    with pytest.raises(DatasetError, match="no ids given"):
        chunking_set.subset([])


# --- hostile input: every failure a DatasetError naming the file and the line ---------------------


def _write_beir(tmp_path: Path, *, corpus: str, queries: str, qrels: str) -> Path:
    (tmp_path / "qrels").mkdir(parents=True, exist_ok=True)
    (tmp_path / "corpus.jsonl").write_text(corpus)
    (tmp_path / "queries.jsonl").write_text(queries)
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return tmp_path


GOOD_CORPUS = '{"_id": "a", "text": "alpha"}\n{"_id": "b", "text": "beta"}\n'


@pytest.mark.parametrize(
    ("queries", "line", "message"),
    [
        ('{"_id": "q", "text": "x?"}\n["q2", "y?"]\n', 2, r"is a JSON list, not an object"),
        ('{"_id": "q", "text": 5}\n', 1, r"has a int as 'text'"),
        ('{"_id": "q", "text": ["x"]}\n', 1, r"has a list as 'text'"),
        ('{"_id": "q", "text": NaN}\n', 1, r"has a float as 'text'"),
        ('{"text": "x?"}\n', 1, r"has no '_id'"),
        ('{"_id": "q"}\n', 1, r"has no 'text'"),
        ('{"_id": true, "text": "x?"}\n', 1, r"has a bool as '_id'"),
        ('{"_id": "", "text": "x?"}\n', 1, r"has an empty '_id'"),
        ('\n\n{"_id": "q", "text": "x?"\n', 3, r"is not valid JSON"),
        ("not json at all\n", 1, r"is not valid JSON"),
        ('"just a string"\n', 1, r"is a JSON str, not an object"),
        ("[" * 100_000 + "]" * 100_000 + "\n", 1, r"(nests JSON too deeply|is a JSON list)"),
        ('{"_id": "q", "text": "x?"}\n{"_id": "q2", "text": "   "}\n', 2, r"query 'q2' has no text"),
    ],
)
def test_queries_rows_of_the_wrong_shape_name_file_and_line(tmp_path, queries, line, message):
    path = _write_beir(tmp_path, corpus=GOOD_CORPUS, queries=queries, qrels="q\ta\t1\n")
    with pytest.raises(DatasetError, match=rf"queries.jsonl, line {line}: {message}") as err:
        load_dataset(path)
    assert err.value.path == str(path / "queries.jsonl") and err.value.line == line


@pytest.mark.parametrize(
    ("corpus", "message"),
    [
        ('{"_id": "a", "text": "alpha"}\n[1]\n', r"corpus.jsonl, line 2: is a JSON list"),
        ('{"_id": "a", "text": 3.5}\n', r"corpus.jsonl, line 1: has a float as 'text'"),
        ('{"_id": "a", "title": {"x": 1}, "text": "t"}\n', r"corpus.jsonl, line 1: has a dict as 'title'"),
        ('{"_id": "a", "text": "t", "metadata": [1]}\n', r"corpus.jsonl, line 1: has a list as 'metadata'"),
        ('{"_id": "a", "text": "t"}\n\n{"_id": "a", "text": "u"}\n',
         r"corpus.jsonl, line 3: document id 'a' appears on lines 1 and 3; ids must be unique"),
        ('{"_id": 7, "text": "t"}\n{"_id": "7", "text": "u"}\n', r"document id '7' appears on lines 1 and 2"),
    ],
)
def test_corpus_rows_of_the_wrong_shape_and_duplicate_ids(tmp_path, corpus, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(_write_beir(tmp_path, corpus=corpus, queries='{"_id": "q", "text": "x?"}\n', qrels=""))


@pytest.mark.parametrize(
    ("queries", "lines"),
    [
        ('{"_id": "q1", "text": "first"}\n{"_id": "q1", "text": "second"}\n', (1, 2)),
        ('{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": "b"}\n\n{"_id": "q1", "text": "c"}\n', (1, 4)),
        ('{"_id": 5, "text": "a"}\n{"_id": "5", "text": "b"}\n', (1, 2)),
    ],
)
def test_duplicate_query_ids_raise_with_both_lines(tmp_path, queries, lines):
    path = _write_beir(tmp_path, corpus=GOOD_CORPUS, queries=queries, qrels="")
    with pytest.raises(DatasetError, match=rf"line {lines[1]}: query id '\w+' appears on lines {lines[0]} and "
                                           rf"{lines[1]}; ids must be unique"):
        load_dataset(path)
    (path / "corpus.jsonl").rename(path / "corpus.txt")  # the same files as a folder's BEIR questions
    with pytest.raises(DatasetError, match=rf"appears on lines {lines[0]} and {lines[1]}"):
        load_folder(path)


def test_duplicate_judgements_and_bad_qrels_rows_name_the_line(tmp_path):
    queries = '{"_id": "q", "text": "x?"}\n'
    with pytest.raises(DatasetError, match=r"test.tsv, line 3: judgement 'q\\ta' appears on lines 2 and 3"):
        load_dataset(_write_beir(tmp_path / "1", corpus=GOOD_CORPUS, queries=queries, qrels="q\ta\t1\nq\ta\t0\n"))
    with pytest.raises(DatasetError, match=r"test.tsv, line 2: is not 'query-id<TAB>corpus-id<TAB>integer score'"):
        load_dataset(_write_beir(tmp_path / "2", corpus=GOOD_CORPUS, queries=queries, qrels="q a 1\n"))
    path = _write_beir(tmp_path / "3", corpus=GOOD_CORPUS, queries=queries, qrels="")
    (path / "qrels" / "test.tsv").write_text("qid\tdid\tscore\nq\ta\t1\n")
    with pytest.raises(DatasetError, match=r"test.tsv, line 1: must start with the header"):
        load_dataset(path)


@pytest.mark.parametrize("target", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
@pytest.mark.parametrize("codec", ["latin-1", "utf-16", "cp1252"])
def test_non_utf8_beir_files_are_named_with_the_line(tmp_path, target, codec):
    path = _write_beir(tmp_path, corpus=GOOD_CORPUS, queries='{"_id": "q", "text": "x?"}\n', qrels="q\ta\t1\n")
    original = (path / target).read_text()
    (path / target).write_bytes((original + "caf\u00e9 \u00e0 la cr\u00e8me\n").encode(codec))
    with pytest.raises(DatasetError, match=rf"{target} is not UTF-8 \(line \d+, byte \d+: .*re-save it as UTF-8") as err:
        load_dataset(path)
    assert err.value.line >= 1 and err.value.path == str(path / target)


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_a_beir_file_that_is_a_folder(tmp_path, missing):
    path = _write_beir(tmp_path, corpus=GOOD_CORPUS, queries='{"_id": "q", "text": "x?"}\n', qrels="q\ta\t1\n")
    (path / missing).unlink()
    (path / missing).mkdir()
    with pytest.raises(DatasetError, match=rf"{missing} is a folder, not a file"):
        load_beir(path)


def _questions_folder(tmp_path: Path, questions: bytes | str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "a.txt").write_text("Sky blue. The sky is blue on clear days.")
    data = questions.encode() if isinstance(questions, str) else questions
    (tmp_path / "questions.csv").write_bytes(data)
    return tmp_path


HEADER = "question,references,corpus_id\n"


@pytest.mark.parametrize(
    ("questions", "message"),
    [
        (HEADER + 'ok?,"[{""start_index"": 0, ""end_index"": 3}]",a\n' + "big," + "x" * 200_000 + ",a\n",
         r"questions.csv, line 3: is not valid CSV \(field larger than field limit \(131072\)\); a field this large"),
        (HEADER + '"unclosed,[],a\n' + "x" * 140_000 + "\n", r"questions.csv, line \d+: is not valid CSV"),
        (HEADER + 'q?,"[{""start_index"": 0}]",a\n', r"questions.csv, line 2: row 1 needs references like"),
        (HEADER + "q?,not json,a\n", r"line 2: row 1 needs references like .*JSONDecodeError"),
        (HEADER + 'q?,"{""start_index"": 0}",a\n', r"line 2: row 1 needs references like"),
        (HEADER + ',"[{""start_index"": 0, ""end_index"": 3}]",a\n', r"line 2: row 1 has no question"),
        (HEADER + 'q?,"[{""start_index"": 0, ""end_index"": 3}]",zz\n', r"line 2: row 1 names corpus_id 'zz', which"),
        (HEADER + 'q?,"[{""start_index"": 5, ""end_index"": 999}]",a\n', r"row 1: reference 5:999 lies outside 'a.txt'"),
        (HEADER + 'q?,"[{""start_index"": 3, ""end_index"": 3}]",a\n', r"row 1: reference 3:3 lies outside"),
        ("query,refs\nq?,[]\n", r"questions.csv, line 1: needs a header with the columns question, references"),
        ("", r"questions.csv, line 1: needs a header"),
        ((HEADER + "caf\u00e9?,[],a\n").encode("latin-1"), r"questions.csv is not UTF-8 \(line 2, byte 33"),
        (b"\xff\xfe" + (HEADER + "q?,[],a\n").encode("utf-16-le"), r"questions.csv is not UTF-8 \(line 1, byte 0"),
    ],
)
def test_bad_questions_csv_names_the_file_and_line(tmp_path, questions, message):
    with pytest.raises(DatasetError, match=message):
        load_folder(_questions_folder(tmp_path, questions))


def test_a_questions_path_that_is_a_folder_or_missing(tmp_path, chunking_set):
    folder = _questions_folder(tmp_path / "f", HEADER)
    (folder / "questions.csv").unlink()
    (folder / "questions.csv").mkdir()
    (folder / "questions.csv" / "inner.txt").write_text("a document inside the misnamed folder")
    with pytest.raises(DatasetError, match=r"questions.csv is a folder, not a file"):
        load_folder(folder)
    docs = [Document(id="a.txt", text="some text")]
    with pytest.raises(DatasetError, match=r"questions.csv is a folder, not a file; point at the file itself"):
        read_span_questions(folder / "questions.csv", docs)
    with pytest.raises(DatasetError, match=r"nothing.csv cannot be read \(No such file or directory\)"):
        read_span_questions(tmp_path / "nothing.csv", docs)
    span_set = tmp_path / "spans"
    (span_set / "corpora").mkdir(parents=True)
    (span_set / "corpora" / "a.md").write_text("text")
    (span_set / "questions.csv").mkdir()
    with pytest.raises(DatasetError, match=r"questions.csv is a folder"):
        load_dataset(span_set)


def test_half_a_beir_pair_in_a_folder_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q", "text": "x?"}\n')
    with pytest.raises(DatasetError, match=r"BEIR questions need both queries.jsonl and qrels/test.tsv; add qrels"):
        load_folder(tmp_path)


@pytest.mark.parametrize("name", ["a\0b", "x" * 5000, "/nonexistent/" + "y" * 300, ""])
def test_dataset_names_with_nul_or_too_long_are_refused_clearly(name):
    with pytest.raises(DatasetError, match=r"no dataset .*not a bundled name") as err:
        load_dataset(name)
    assert len(str(err.value)) < 300


def test_dataset_errors_survive_pickling_with_their_place():
    error = DatasetError("is broken", path="/data/q.jsonl", line=7)
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.path, again.line, again.page) == ("/data/q.jsonl, line 7: is broken", "/data/q.jsonl", 7, None)
    assert isinstance(again, ValueError)


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_in_a_beir_file_load_or_fail_as_dataset_errors(tmp_path_factory, data):
    for target in ("queries.jsonl", "qrels/test.tsv", "corpus.jsonl"):
        path = _write_beir(tmp_path_factory.mktemp("beir"), corpus=GOOD_CORPUS,
                           queries='{"_id": "q", "text": "x?"}\n', qrels="q\ta\t1\n")
        (path / target).write_bytes(data)
        try:
            load_dataset(path)
        except DatasetError as exc:
            assert exc.path is None or Path(exc.path).parent.name in (path.name, "qrels")
        # any other exception fails the test


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.text(max_size=40) | st.sampled_from(['[{"start_index": 0, "end_index": 3}]', "a",
                                                                 "a.txt", "[]", '"', "\0"]), max_size=4),
                max_size=5))
def test_any_questions_csv_loads_or_fails_as_a_dataset_error(tmp_path_factory, rows):
    buffer = [HEADER.strip()] + [",".join(row) for row in rows]
    folder = _questions_folder(tmp_path_factory.mktemp("q"), "\n".join(buffer) + "\n")
    try:
        dataset = load_folder(folder)
    except DatasetError as exc:
        assert "questions.csv" in str(exc)
    else:
        assert all(s.doc_id == "a.txt" for spans in dataset.spans.values() for s in spans)


def test_unreadable_documents_can_be_left_out_with_the_reason(tmp_path):
    from hostile_files import encrypted_pdf

    (tmp_path / "ok.md").write_text("# Fine\n\ntext")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "locked.pdf").write_bytes(encrypted_pdf("AES-256"))
    with pytest.raises(DatasetError, match="latin1.txt is not UTF-8"):
        load_folder(tmp_path)
    dataset = load_folder(tmp_path, unreadable="skip")
    assert [d.id for d in dataset.documents] == ["ok.md"]
    assert dataset.left_out == (
        "latin1.txt (is not UTF-8 (line 1, byte 3: unexpected end of data); re-save it as UTF-8)",
        "locked.pdf (is password-protected; save a copy without a password and load that)",
    )
    (tmp_path / "ok.md").unlink()
    with pytest.raises(DatasetError, match=r"no documents in .*left out: latin1.txt \(is not UTF-8"):
        load_folder(tmp_path, unreadable="skip")


@pytest.mark.parametrize("offset", ["1.5", '"3"', "true", "null", "[0]"])
def test_reference_offsets_must_be_integers(tmp_path, offset):
    row = f'q?,"[{{""start_index"": {offset.replace(chr(34), chr(34) * 2)}, ""end_index"": 5}}]",a\n'
    with pytest.raises(DatasetError, match=r"line 2: row 1 needs references like .*is not an integer"):
        load_folder(_questions_folder(tmp_path, HEADER + row))


def test_a_byte_order_mark_is_not_part_of_the_first_header_or_row(tmp_path):
    bom = "\ufeff"
    folder = _questions_folder(tmp_path / "csv", bom + HEADER + 'q?,"[{""start_index"": 0, ""end_index"": 3}]",a\n')
    assert load_folder(folder).queries == {"1": "q?"}
    path = _write_beir(tmp_path / "beir", corpus=bom + GOOD_CORPUS, queries=bom + '{"_id": "q", "text": "x?"}\n',
                       qrels="q\ta\t1\n")
    (path / "qrels" / "test.tsv").write_text(bom + (path / "qrels" / "test.tsv").read_text())
    dataset = load_dataset(path)
    assert dataset.queries == {"q": "x?"} and dataset.qrels == {"q": {"a": 1}} and dataset.documents[0].id == "a"


def test_json_lines_split_on_newlines_only(tmp_path):
    text = "a line\u2028separator, a paragraph\u2029separator and a form\x0cfeed"
    path = _write_beir(tmp_path, corpus=json.dumps({"_id": "a", "text": text}, ensure_ascii=False) + "\r\n",
                       queries=json.dumps({"_id": "q", "text": "sep\u2028?"}, ensure_ascii=False) + "\n",
                       qrels="q\ta\t1\n")
    dataset = load_dataset(path)
    assert dataset.documents[0].text == text and dataset.queries == {"q": "sep\u2028?"}
