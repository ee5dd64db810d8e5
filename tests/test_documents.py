"""Reading a folder's files: never outside the folder, broken HTML and hostile PDFs fail clearly."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from hostile_files import ENCRYPTIONS, bomb_pdf, encrypted_pdf, many_pages_pdf, minimal_pdf  # noqa: E402

from workbench import documents  # noqa: E402
from workbench.datasets import DatasetError, load_folder  # noqa: E402
from workbench.documents import html_text, list_files  # noqa: E402

SECRET = "TOP-SECRET-OUTSIDE-THE-FOLDER"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the loaded one, holding files the loader must never read."""
    folder = tmp_path / "outside"
    (folder / "deep").mkdir(parents=True)
    (folder / "secret.txt").write_text(SECRET)
    (folder / "deep" / "more.md").write_text(f"# {SECRET}")
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha text")
    (folder / "sub" / "b.md").write_text("# Beta\n\nbeta text")
    return folder


def texts(dataset) -> str:
    return "\n".join(d.text for d in dataset.documents)


@pytest.mark.parametrize("absolute", [True, False], ids=["absolute", "relative"])
def test_links_out_of_the_folder_are_never_read_and_are_reported(root, outside, absolute):
    def link(name: str, target: Path) -> None:
        (root / name).symlink_to(target if absolute else os.path.relpath(target, (root / name).parent))

    link("passwd.txt", Path("/etc/passwd") if absolute else outside / "secret.txt")
    link("secret.txt", outside / "secret.txt")
    link("sub/up.md", outside / "deep" / "more.md")
    link("out", outside)  # a folder link
    link("sub/outdeep", outside / "deep")
    dataset = load_folder(root)
    assert {d.id for d in dataset.documents} == {"a.txt", "sub/b.md"}
    assert SECRET not in texts(dataset) and "root:" not in texts(dataset)
    assert set(dataset.left_out) == {
        "passwd.txt (a link to outside the folder)", "secret.txt (a link to outside the folder)",
        "sub/up.md (a link to outside the folder)", "out/ (a link to outside the folder)",
        "sub/outdeep/ (a link to outside the folder)",
    }


def test_links_inside_the_folder_are_read_once_and_loops_are_left_out(root):
    (root / "alias.txt").symlink_to("a.txt")  # a second name for a file inside: read under its own name
    (root / "sub" / "again").symlink_to("..")  # a folder loop: root/sub/again -> root
    (root / "same").symlink_to("sub")  # a second path to a folder: read once, under its real path
    (root / "loop1.txt").symlink_to("loop2.txt")
    (root / "loop2.txt").symlink_to("loop1.txt")
    (root / "self.md").symlink_to("self.md")
    (root / "gone.txt").symlink_to("nothing-here.txt")
    (root / "dirloop").symlink_to("dirloop")
    dataset = load_folder(root)
    assert [d.id for d in dataset.documents] == ["a.txt", "alias.txt", "sub/b.md"]
    assert dataset.documents[1].text == "alpha text"
    assert set(dataset.left_out) == {
        "loop1.txt (a link loop)", "loop2.txt (a link loop)", "self.md (a link loop)", "gone.txt (a broken link)",
    }


def test_a_root_that_is_itself_a_link_loads_and_special_files_are_left_out(root, tmp_path):
    os.mkfifo(root / "pipe.txt")  # reading a FIFO would block forever
    (tmp_path / "via").symlink_to(root)
    dataset = load_folder(tmp_path / "via")
    assert [d.id for d in dataset.documents] == ["a.txt", "sub/b.md"]
    assert dataset.left_out == ("pipe.txt (not a regular file)",)


def test_questions_files_that_leave_the_folder_or_are_folders_are_refused(root, outside):
    (outside / "questions.csv").write_text("question,references,corpus_id\nq?,[],a\n")
    (root / "questions.csv").symlink_to(outside / "questions.csv")
    with pytest.raises(DatasetError, match=r"questions.csv is a link that leaves its folder"):
        load_folder(root)
    (root / "questions.csv").unlink()
    (root / "questions.csv").mkdir()
    with pytest.raises(DatasetError, match=r"questions.csv is a folder, not a file"):
        load_folder(root)
    (root / "questions.csv").rmdir()
    (root / "queries.jsonl").symlink_to(outside / "secret.txt")
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(DatasetError, match=r"queries.jsonl is a link that leaves its folder"):
        load_folder(root)


def test_only_links_out_means_no_documents_and_says_what_was_left_out(tmp_path, outside):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(DatasetError, match=r"no documents in .*left out: x.txt \(a link to outside the folder\)"):
        load_folder(tmp_path / "empty")


@pytest.mark.parametrize(
    "junk",
    [
        "<![if !IE]>", "<![endif]>", "<![CDATA[x]]>", "<![foo bar]>", "<!>", "<!--", "<![", "</>", "<?php x ?>",
        "<p <p <p>", "<a href='", "&#0;&#xD800;&#99999999;", "\x00\x01\x02", "<svg><![CDATA[x]]></svg>",
        "<table><td>cell", "</div></div></body></html>",
    ],
)
def test_broken_html_still_gives_its_visible_text(tmp_path, junk):
    (tmp_path / "page.html").write_text(f"<html><body><h1>Head</h1><p>alpha</p>{junk}<p>omega</p></body></html>")
    doc = load_folder(tmp_path).documents[0]
    assert "alpha" in doc.text and doc.metadata["headings"] == ["Head"]
    if junk.endswith(">"):  # a construct that closes: the text after it is kept
        assert "omega" in doc.text


def test_deeply_nested_html_and_skipped_elements(tmp_path):
    depth = documents.MAX_HTML_DEPTH
    text, title, headings = html_text("<title>T</title>" + "<div>" * depth + "deep" + "</div>" * depth)
    assert text == "deep" and title == "T" and headings == []
    flat = "<p>x<li>y<br><img src=a>" * 20_000  # left open, but never deeper
    assert html_text(flat)[0].count("x") == 20_000
    (tmp_path / "deep.html").write_text("<span>" * 5 + "<div>" * 50_000 + "x")
    with pytest.raises(DatasetError, match=r"deep.html nests HTML elements about 50,005 deep, over the limit"):
        load_folder(tmp_path)
    text, _, headings = html_text(
        "<style>p{}</style><p>seen<script>hidden()</script><noscript>no</noscript><template>t</template></p>"
        "<!-- a comment --><h3>Costs <b>&amp;</b> fees</h3>"
    )
    assert text == "seen\n\n### Costs & fees" and headings == ["Costs & fees"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("<>!/[]-?&#;=\"' \x00abcdpscriptitle")) | st.characters(), max_size=300))
def test_any_text_parses_as_html(page):
    text, title, headings = html_text(page)
    assert isinstance(text, str) and isinstance(title, str) and all(isinstance(h, str) for h in headings)
    assert "<script" not in text.lower() or "<script" in page.lower()


@pytest.mark.parametrize("kind", [*ENCRYPTIONS, "AES-256"])
def test_encrypted_pdfs_are_named_with_the_fix(tmp_path, kind):
    (tmp_path / "locked.pdf").write_bytes(encrypted_pdf(kind))
    (tmp_path / "ok.txt").write_text("fine")
    with pytest.raises(DatasetError, match=r"locked.pdf is (encrypted in a way that cannot be opened|"
                                           r"password-protected).*save .*(unencrypted|without a password)") as err:
        load_folder(tmp_path)
    assert err.value.path == str(tmp_path / "locked.pdf")


@pytest.mark.parametrize("kind", ["text", "blank"])
def test_a_pdf_decompression_bomb_stops_at_the_stream_limit(tmp_path, kind):
    (tmp_path / "bomb.pdf").write_bytes(bomb_pdf(kind))
    with pytest.raises(DatasetError, match=r"bomb.pdf, page 1: decompresses or parses past the limits") as err:
        load_folder(tmp_path)
    assert err.value.page == 1


def test_pdf_pages_and_characters_are_bounded(tmp_path, monkeypatch):
    (tmp_path / "pages.pdf").write_bytes(many_pages_pdf(documents.MAX_PDF_PAGES + 1))
    with pytest.raises(DatasetError, match=r"pages.pdf has 5,001 pages, over the limit of 5,000"):
        load_folder(tmp_path)
    (tmp_path / "pages.pdf").write_bytes(many_pages_pdf(40))
    assert load_folder(tmp_path).documents[0].text.count("again") == 40
    monkeypatch.setattr(documents, "MAX_DOCUMENT_CHARS", 100)
    with pytest.raises(DatasetError, match=r"pages.pdf, page 21: holds over 100 characters of text by this page"):
        load_folder(tmp_path)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=600), junk=st.binary(max_size=40))
def test_damaged_pdfs_load_or_fail_as_dataset_errors(tmp_path_factory, cut, junk):
    good = minimal_pdf("Quarterly revenue grew")
    folder = tmp_path_factory.mktemp("pdf")
    (folder / "d.pdf").write_bytes(good[:cut] + junk + good[cut + len(junk):])
    try:
        dataset = load_folder(folder)
    except DatasetError as exc:
        assert "d.pdf" in str(exc)
    else:
        assert dataset.documents[0].id == "d.pdf"


def test_list_files_reports_relative_paths_and_real_paths(root):
    (root / "alias.md").symlink_to(root / "sub" / "b.md")
    files, left_out = list_files(root)
    assert files == [("a.txt", (root / "a.txt").resolve()), ("alias.md", (root / "sub" / "b.md").resolve()),
                     ("sub/b.md", (root / "sub" / "b.md").resolve())]
    assert left_out == []


NAMES = ["a.txt", "b.md", "sub", "sub/c.txt", "sub/deep", "sub/deep/d.html", "e.pdf", "f"]
TARGETS = ["outside/secret.txt", "outside", "outside/deep", "/etc/passwd", "/", "..", "../..", "docs/a.txt", "docs/sub",
           "docs", "nowhere.txt", "docs/f"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(links=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(TARGETS), st.booleans()), max_size=6))
def test_no_mix_of_links_reads_outside_the_folder(tmp_path_factory, links):
    base = tmp_path_factory.mktemp("mix")
    (base / "outside" / "deep").mkdir(parents=True)
    (base / "outside" / "secret.txt").write_text(SECRET)
    (base / "outside" / "deep" / "more.md").write_text(SECRET)
    root = base / "docs"
    root.mkdir()
    (root / "a.txt").write_text("alpha")
    for name, target, relative in links:
        path = root / name
        if path.exists() or path.is_symlink() or not path.parent.is_dir():
            continue
        aim = Path(target) if target.startswith("/") else base / target
        path.symlink_to(os.path.relpath(aim, path.parent) if relative else aim)
    dataset = load_folder(root, empty="skip", unreadable="skip")
    assert SECRET not in texts(dataset) and "root:" not in texts(dataset)
    for doc in dataset.documents:
        assert (root / doc.id).resolve().is_relative_to(root.resolve())


def test_a_root_that_is_a_loop_a_file_or_missing_is_named(tmp_path):
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "file.txt").write_text("x")
    for root in ("loop", "file.txt", "missing"):
        with pytest.raises(DatasetError, match=rf"{root} is not a folder; point at a folder of documents"):
            load_folder(tmp_path / root)
