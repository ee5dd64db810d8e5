"""Uploads: documents and zips land only under the uploads folder; bad uploads fail clearly."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from workbench.datasets import load_dataset
from workbench.uploads import MAX_UPLOAD_BYTES, UploadedFile, UploadError, store_upload, uploads_root


def upload(name: str, data: bytes) -> UploadedFile:
    return UploadedFile(name=name, data=io.BytesIO(data), size=len(data))


def zipped(members: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return buffer.getvalue()


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
