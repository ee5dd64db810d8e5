"""Uploads: documents and zips land only under the uploads folder; bad uploads fail clearly."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from hostile_files import zipped  # noqa: E402

from workbench.datasets import load_dataset  # noqa: E402
from workbench.uploads import MAX_UPLOAD_BYTES, UploadedFile, UploadError, store_upload, uploads_root  # noqa: E402


def upload(name: str, data: bytes) -> UploadedFile:
    return UploadedFile(name=name, data=io.BytesIO(data), size=len(data))


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "app-data" / "uploads"


def test_default_root_is_the_cache_dirs_uploads_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "c"))
    assert uploads_root() == tmp_path / "c" / "uploads"


def test_loose_documents_and_questions_load_as_a_dataset(root):
    questions = 'question,references,corpus_id\n"What colour?","[{""start_index"": 0, ""end_index"": 9}]",a\n'
    stored = store_upload(
        [upload("a.txt", b"Sky blue. The sky is blue on clear days."), upload("notes/b.md", b"# B\nGrass is green.")],
        [upload("my questions.csv", questions.encode())],
        root=root,
    )
    assert stored.path.parent == root
    assert stored.documents == ("a.txt", "b.md")  # folders in a loose name are dropped
    assert stored.questions == ("questions.csv",)
    dataset = load_dataset(stored.path)
    assert {d.id for d in dataset.documents} == {"a.txt", "b.md"}
    assert dataset.queries == {"1": "What colour?"}
    assert dataset.spans["1"][0].doc_id == "a.txt"


def test_same_upload_is_stored_once(root):
    first = store_upload([upload("a.txt", b"hello world")], root=root)
    second = store_upload([upload("a.txt", b"hello world")], root=root)
    assert first.path == second.path
    assert [p.name for p in root.iterdir()] == [first.path.name]  # no staging folder left behind


def test_zip_of_a_folder_is_unpacked_without_its_top_folder_and_skips_other_files(root):
    data = zipped({
        "docs/a.txt": b"alpha text", "docs/sub/b.html": b"<p>beta</p>", "docs/run.exe": b"MZ",
        "docs/.DS_Store": b"x", "__MACOSX/docs/._a.txt": b"x",
        "docs/queries.jsonl": b'{"_id": "q1", "text": "alpha?"}\n',
        "docs/qrels/test.tsv": b"query-id\tcorpus-id\tscore\nq1\ta.txt\t1\n",
    })
    stored = store_upload([upload("docs.zip", data)], root=root)
    assert files_under(stored.path) == {"a.txt", "sub/b.html", "queries.jsonl", "qrels/test.tsv"}
    assert any("run.exe" in s for s in stored.skipped)
    dataset = load_dataset(stored.path)
    assert dataset.qrels == {"q1": {"a.txt": 1}}


@pytest.mark.parametrize("evil", ["../escape.txt", "/etc/evil.txt", "a/../../escape.txt", "..\\escape.txt",
                                  "C:/evil.txt"])
def test_zip_with_climbing_paths_is_refused_and_writes_nothing(root, evil):
    data = zipped({"ok.txt": b"fine", evil: b"pwned"})
    with pytest.raises(UploadError, match="outside the zip"):
        store_upload([upload("evil.zip", data)], root=root)
    assert not (root.parent / "escape.txt").exists()
    assert files_under(root.parent) == set()  # not even the harmless member was kept


def test_symlinks_in_a_zip_are_skipped(root):
    stored = store_upload([upload("l.zip", zipped({"a.txt": b"text"}, symlinks={"link.txt": "/etc/passwd"}))],
                          root=root)
    assert files_under(stored.path) == {"a.txt"}
    assert stored.skipped == ("link.txt (symbolic link)",)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.txt", b"", "is empty"),
        ("broken.zip", b"PK\x03\x04 this is not really a zip", "not a readable zip"),
        ("tool.exe", b"MZ", "not a supported document"),
        ("only-junk.zip", zipped({"x.exe": b"MZ"}), "holds no .txt"),
    ],
)
def test_bad_uploads_fail_clearly_and_leave_nothing(root, name, data, message):
    with pytest.raises(UploadError, match=message):
        store_upload([upload(name, data)], root=root)
    assert files_under(root.parent) == set()


def test_no_files_and_half_a_beir_pair_are_refused(root):
    with pytest.raises(UploadError, match="no files uploaded"):
        store_upload([], root=root)
    with pytest.raises(UploadError, match="both queries.jsonl and a qrels"):
        store_upload([upload("a.txt", b"text")], [upload("queries.jsonl", b'{"_id": "1", "text": "q"}\n')],
                     root=root)


def test_a_file_over_200_mb_is_refused_before_it_is_read(root, tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:  # sparse: costs no disk
        f.truncate(MAX_UPLOAD_BYTES + 1)
    with open(big, "rb") as f, pytest.raises(UploadError, match="over the 200 MB limit"):
        store_upload([UploadedFile(name="big.txt", data=f, size=big.stat().st_size)], root=root)
        assert f.tell() == 0
    assert not root.exists() or files_under(root) == set()


def test_a_zip_that_unpacks_past_200_mb_is_refused(root):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("big.txt", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 20)
            for _ in range(MAX_UPLOAD_BYTES // len(block) + 1):
                member.write(block)
    with pytest.raises(UploadError, match="unpacks to"):
        store_upload([upload("bomb.zip", buffer.getvalue())], root=root)
    assert files_under(root.parent) == set()


def test_a_zip_whose_headers_lie_about_sizes_is_refused_as_corrupt(root):
    data = bytearray(zipped({"a.txt": b"x" * 5000}))
    # Rewrite the declared size in the local header and the central directory to 10 bytes.
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(sig)
        data[at + offset:at + offset + 4] = (10).to_bytes(4, "little")
    with pytest.raises(UploadError, match="corrupt"):
        store_upload([upload("liar.zip", bytes(data))], root=root)
    assert files_under(root.parent) == set()


# --- hostile names and shapes: a clear message, the rest of the upload stays usable -------------


def test_an_upload_error_is_a_dataset_error():
    from workbench.datasets import DatasetError

    assert issubclass(UploadError, DatasetError) and issubclass(UploadError, ValueError)


@pytest.mark.parametrize("order", ["file first", "folder first"])
def test_a_zip_with_a_file_and_a_folder_of_one_name_keeps_the_rest(root, order):
    members = {"x.txt": b"the file", "x.txt/y.txt": b"inside the folder", "ok.md": b"# fine"}
    if order == "folder first":
        members = dict(reversed(list(members.items())))
    stored = store_upload([upload("clash.zip", zipped(members))], root=root)
    assert files_under(stored.path) == {"x.txt/y.txt", "ok.md"}
    assert stored.skipped == ("x.txt (also a folder in the zip; rename one)",)
    assert {d.id for d in load_dataset(stored.path).documents} == {"x.txt/y.txt", "ok.md"}


def test_a_loose_file_and_a_zip_folder_of_one_name_fail_clearly(root):
    with pytest.raises(UploadError, match=r"cannot store .*a file and a folder may share its name"):
        store_upload([upload("a.txt", b"loose"), upload("z.zip", zipped({"a.txt/b.txt": b"zipped", "c.md": b"c"}))],
                     root=root)
    assert files_under(root) == set()


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("nul\0byte.txt", "NUL or another control character"),
        ("bell\x07.md", "NUL or another control character"),
        ("line\nbreak.txt", "NUL or another control character"),
        ("x" * 252 + ".txt", "over 255 bytes"),
        ("\u00e9" * 130 + ".txt", "over 255 bytes"),  # 260 bytes in UTF-8, 134 characters
        ("/".join(["d" * 200] * 7) + "/deep.txt", "path is over 1024 bytes"),
    ],
)
def test_bad_file_names_are_skipped_with_the_reason_and_the_rest_is_kept(root, bad, why):
    in_zip = store_upload([upload("docs.zip", zipped({bad: b"bad name", "good.txt": b"good text"}))], root=root)
    assert files_under(in_zip.path) == {"good.txt"}
    assert len(in_zip.skipped) == 1 and len(in_zip.skipped[0]) < 250
    if "\0" in bad:  # a zip cannot carry a NUL: zipfile cuts the name there, on writing and on reading
        assert in_zip.skipped == ("nul (not one of .txt, .md, .markdown, .html, .htm, .pdf)",)
    else:
        assert why in in_zip.skipped[0]
    if "/" not in bad:
        loose = store_upload([upload(bad, b"bad name"), upload("good.txt", b"good text")], root=root / "loose")
        assert files_under(loose.path) == {"good.txt"} and why in loose.skipped[0]
    with pytest.raises(UploadError, match=r"holds no .* documents \(skipped: "):
        store_upload([upload("only-bad.zip", zipped({bad: b"bad name"}))], root=root / "only")


def test_a_folder_named_like_a_questions_file_is_skipped(root):
    stored = store_upload([upload("q.zip", zipped({"questions.csv/notes.txt": b"x", "a.txt": b"alpha",
                                                    "queries.jsonl/b.txt": b"y"}))], root=root)
    assert files_under(stored.path) == {"a.txt"} and stored.questions == ()
    assert all("named like a questions file" in s for s in stored.skipped) and len(stored.skipped) == 2
    assert [d.id for d in load_dataset(stored.path).documents] == ["a.txt"]


def test_a_huge_name_never_floods_the_message(root):
    with pytest.raises(UploadError) as err:
        store_upload([upload("n" * 1_000_000 + ".exe", b"MZ")], root=root)
    assert len(str(err.value)) < 400


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.text(st.characters(blacklist_characters="\0"), min_size=1, max_size=40) | st.sampled_from(
    ["a.txt", "a.txt/b.txt", "../x.txt", "q/../../y.md", "C:/z.txt", "dir/", "questions.csv", "qrels/test.tsv",
     ".hidden.txt", "x\\..\\..\\w.txt"]), min_size=1, max_size=6))
def test_any_member_names_store_safely_or_fail_as_upload_errors(tmp_path_factory, names):
    root = tmp_path_factory.mktemp("any") / "uploads"
    members = {name: b"text of " + name.encode("utf-8", "surrogatepass") for name in names}
    try:
        stored = store_upload([upload("any.zip", zipped(members))], root=root)
    except UploadError:
        assert not root.exists() or all(p.parent == root for p in root.iterdir())
    else:
        assert stored.path.parent == root
        assert all(p.resolve().is_relative_to(stored.path.resolve()) for p in stored.path.rglob("*"))


def test_every_suffix_the_folder_loader_reads_is_kept(root):
    members = {"a.htm": b"<title>A</title><p>alpha</p>", "b.markdown": b"# B\n\nbeta", "c.TXT": b"gamma"}
    stored = store_upload([upload("docs.zip", zipped(members))], root=root)
    assert stored.documents == ("a.htm", "b.markdown", "c.TXT") and stored.skipped == ()
    assert {d.metadata["title"] for d in load_dataset(stored.path).documents} == {"A", "B", "c"}


@settings(max_examples=60, deadline=None)
@given(suffix=st.sampled_from([".txt", ".md", ".html", ".pdf"]), document=st.binary(min_size=1, max_size=200),
       questions=st.none() | st.tuples(st.sampled_from(["q.csv", "q.jsonl", "q.tsv"]),
                                       st.binary(min_size=1, max_size=200)))
def test_any_upload_loads_or_fails_as_a_dataset_error(tmp_path_factory, suffix, document, questions):
    from workbench.datasets import DatasetError

    root = tmp_path_factory.mktemp("up") / "uploads"
    asked = [upload(*questions)] if questions else []
    try:
        stored = store_upload([upload("doc" + suffix, document), upload("ok.txt", b"fine text")], asked, root=root)
        dataset = load_dataset(stored.path, unreadable="skip")
    except DatasetError as exc:
        assert str(exc)
    else:
        assert "ok.txt" in {d.id for d in dataset.documents}
