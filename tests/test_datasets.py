"""Dataset loaders on the bundled data and on folders written by the tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from workbench.datasets import DatasetError, load_beir, load_dataset, load_folder

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


def _minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose content stream draws `text` (enough for a text extractor)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_folder_of_files_with_metadata(tmp_path: Path) -> None:
    (tmp_path / "guide").mkdir()
    (tmp_path / "guide" / "setup.md").write_text("# Setup\n\nInstall it.\n\n## Keys\n\nSet the key.\n")
    (tmp_path / "notes.txt").write_text("plain notes\n")
    (tmp_path / "page.html").write_text(
        "<html><head><title>Page</title><script>var x = 1;</script></head>"
        "<body><h2>Pricing</h2><p>Costs &amp; fees.</p></body></html>"
    )
    (tmp_path / "report.pdf").write_bytes(_minimal_pdf("Quarterly revenue grew"))
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
