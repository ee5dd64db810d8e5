"""Broken and hostile input against every class of issue 13: a clear error every time.

Each case is a small function that feeds one bad input to the real code (loaders, uploads,
configs, sweeps, stores, caches, the Traces page, the Anthropic generator against the local
Messages server in tests/anthropic_server.py) and says what happened:

- clear error: refused with a message that names the input and what is wrong;
- recovered: accepted and handled correctly (a corrupt cache entry recomputed, a link left out);
- FAIL: a wrong result, an unclear or uncaught error, a crash or a hang.

Every case runs in its own forked process, in a fresh temporary folder that is also its
working directory, cache folder (`WORKBENCH_CACHE_DIR`) and run store (`WORKBENCH_STORE`):
nothing touches data/ or the user's caches. A case that runs past its time limit is killed
and fails. (One file of many small cases, over the usual module size, so that one command
reruns every class.)

    .venv/bin/python benchmarks/hostile_inputs.py [--only WORD] [--timeout 120]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

OK, RECOVERED, FAIL = "clear error", "recovered", "FAIL"


@dataclass(frozen=True)
class Case:
    section: str
    klass: str
    label: str
    name: str
    run: Callable[[Path], tuple[str, str]]
    timeout_s: float


CASES: list[Case] = []


def case(section: str, klass: str, label: str, timeout_s: float = 60.0) -> Callable[[Callable], Callable]:
    def register(fn: Callable[[Path], tuple[str, str]]) -> Callable[[Path], tuple[str, str]]:
        CASES.append(Case(section, klass, label, fn.__name__, fn, timeout_s))
        return fn
    return register


def refused(
    action: Callable[[], Any], *needles: str, types: tuple[type[BaseException], ...] = (ValueError,)
) -> tuple[str, str]:
    """A clear error when `action` raises one of `types` whose message holds every needle (case-insensitive)."""
    try:
        action()
    except Exception as exc:  # the point: every exception is judged, none escapes
        return judged(exc, *needles, types=types)
    return FAIL, "accepted without a word"


def judged(
    exc: Exception, *needles: str, types: tuple[type[BaseException], ...] = (ValueError,)
) -> tuple[str, str]:
    """A clear error for an exception of `types`, short, whose message holds every needle."""
    message = str(exc)
    if not isinstance(exc, types):
        return FAIL, f"uncaught {type(exc).__name__}: {message}"
    missing = [n for n in needles if n.lower() not in message.lower()]
    if len(message) > 2000:
        return FAIL, f"message of {len(message):,} characters: {message[:120]}"
    return (FAIL, f"unclear (lacks {missing}): {message}") if missing else (OK, message)


def cli(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "workbench", *args], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=timeout)


def tiny_beir(folder: Path, n_docs: int = 40) -> Path:
    """The first Cranfield documents with the queries judged against them, as a BEIR folder."""
    import json

    from workbench.io import DATA_DIR

    docs = [json.loads(x) for x in (DATA_DIR / "cranfield" / "corpus.jsonl").read_text().splitlines() if x][:n_docs]
    ids = {d["_id"] for d in docs if d.get("text", "").strip()}
    qrels = [r.split("\t") for r in (DATA_DIR / "cranfield" / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    kept = [r for r in qrels if r[1] in ids and int(r[2]) > 0]
    queries = [q for q in map(json.loads, filter(None, (DATA_DIR / "cranfield" / "queries.jsonl").read_text()
                                                 .splitlines())) if q["_id"] in {r[0] for r in kept}]
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs if d["_id"] in ids))
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join("\t".join(r) for r in kept))
    return folder


def upload_then_load(tmp: Path, files: dict[str, bytes], questions: dict[str, bytes] | None = None) -> Any:
    """What the app does with an upload (views/data.py): store it, then load the stored folder."""
    import io

    from workbench.datasets import load_dataset
    from workbench.uploads import UploadedFile, store_upload

    wrap = lambda group: [UploadedFile(name=n, data=io.BytesIO(b), size=len(b)) for n, b in group.items()]  # noqa: E731
    stored = store_upload(wrap(files), wrap(questions or {}), root=tmp / "uploads")
    return stored, load_dataset(stored.path, unreadable="skip")


def bad_document(tmp: Path, name: str, data: bytes) -> tuple[str, str]:
    """A bad document beside a good one: the loader refuses it by name; the app keeps the good one."""
    from workbench.datasets import load_dataset

    try:
        stored, dataset = upload_then_load(tmp, {name: data, "ok.txt": b"fine text"})
    except Exception as exc:
        return judged(exc, name)
    strict = refused(lambda: load_dataset(stored.path), name)
    named = [x for x in dataset.left_out if x.startswith(name)]
    if strict[0] == FAIL:
        return strict
    if [d.id for d in dataset.documents] != ["ok.txt"] or not named:
        return FAIL, f"documents {[d.id for d in dataset.documents]}, left out {list(dataset.left_out)}"
    return RECOVERED, f"the app keeps ok.txt and leaves out {named[0]}"


def first_failure(outcomes: list[tuple[str, str]]) -> tuple[str, str]:
    return next((o for o in outcomes if o[0] == FAIL), outcomes[0])


# --- 1. never serve a wrong number silently ----------------------------------------------------


@case("1", "embedding cache corruption", "garbage over many offsets of a real cache file")
def cache_garbage(tmp: Path) -> tuple[str, str]:
    import numpy as np

    from workbench.embedding import VectorCache

    texts = [f"passage number {i} about wings" for i in range(300)]
    vectors = np.random.default_rng(0).standard_normal((300, 384)).astype(np.float32)
    path = tmp / "embeddings.sqlite"
    cache = VectorCache(path)
    cache.put_many("m", texts, vectors)
    cache.close()
    size = path.stat().st_size
    data = bytearray(path.read_bytes())
    for offset in range(4096, size - 64, max(size // 40, 1)):  # keep the header page: "unreadable" is the next case
        data[offset:offset + 48] = os.urandom(48)
    path.write_bytes(bytes(data))
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    try:
        got = VectorCache(path).get_many("m", texts)
    except Exception as exc:
        return FAIL, f"uncaught {type(exc).__name__}: {exc}"
    wrong = sum(g is not None and not np.array_equal(g, v) for g, v in zip(got, vectors))
    served = sum(g is not None for g in got)
    if wrong:
        return FAIL, f"{wrong} corrupt entries served as hits"
    return RECOVERED, f"{served}/300 intact entries served, {300 - served} corrupt ones read as misses, none wrong"


@case("1", "embedding cache corruption", "a cache file overwritten with junk")
def cache_unreadable(tmp: Path) -> tuple[str, str]:
    import numpy as np

    from workbench.embedding import VectorCache

    path = tmp / "embeddings.sqlite"
    path.write_bytes(os.urandom(64 * 1024))
    try:
        cache = VectorCache(path)
        cache.put_many("m", ["a"], [np.ones(4, dtype=np.float32)])
        again = cache.get_many("m", ["a"])[0]
    except Exception as exc:
        return FAIL, f"uncaught {type(exc).__name__}: {exc}"
    aside = [p.name for p in tmp.iterdir() if p.name.startswith("embeddings.sqlite.")]
    ok = again is not None and np.array_equal(again, np.ones(4)) and aside
    return (RECOVERED, f"moved aside as {aside[0]}; a fresh cache works") if ok else (FAIL, f"aside={aside}")


def _config_refused(tmp: Path, toml: str, *needles: str) -> tuple[str, str]:
    from workbench.config import load_config

    path = tmp / "c.toml"
    path.write_text(toml)
    return refused(lambda: load_config(path), *needles)


# (section, class, input, TOML, words the message must hold): each refused at load.
CONFIGS = [
    ("1", "numeric parameters that wreck results", "bm25_k1 = -1", "[retrieval]\nbm25_k1 = -1.0\n", "bm25_k1"),
    ("1", "numeric parameters that wreck results", "bm25_b = nan", "[retrieval]\nbm25_b = nan\n", "bm25_b"),
    ("1", "numeric parameters that wreck results", "dense_weight = inf", "[retrieval]\ndense_weight = inf\n",
     "dense_weight"),
    ("1", "numeric parameters that wreck results", 'token_pattern = ""', '[retrieval]\ntoken_pattern = ""\n',
     "token_pattern"),
    ("1", "regular expression that hangs", r'token_pattern = "(\w+\s?)+$" (backtracks)',
     '[retrieval]\ntoken_pattern = "(\\\\w+\\\\s?)+$"\n', "token_pattern"),
    ("1", "regular expression that hangs", 'token_pattern = "x*" (matches empty)',
     '[retrieval]\ntoken_pattern = "x*"\n', "token_pattern"),
    ("1", "unknown generation.kind", 'generation.kind = "gpt-9"', '[generation]\nkind = "gpt-9"\n', "gpt-9",
     "extractive"),
    ("3", "TOML sizes beyond 2^53", "chunking.size = 2**60", "[chunking]\nsize = 1152921504606846976\n",
     "chunking.size"),
    ("5", "timeout_s = nan", "generation.timeout_s = nan", "[generation]\ntimeout_s = nan\n", "timeout_s"),
]
for _n, (_section, _klass, _label, _toml, *_needles) in enumerate(CONFIGS):
    CASES.append(Case(_section, _klass, _label, f"config{_n}",
                      lambda tmp, t=_toml, w=tuple(_needles): _config_refused(tmp, t, *w), 30.0))


@case("1", "duplicate query ids", "q1 on lines 1 and 3 of queries.jsonl")
def duplicate_queries(tmp: Path) -> tuple[str, str]:
    from workbench.datasets import load_dataset

    folder = tiny_beir(tmp / "beir")
    lines = (folder / "queries.jsonl").read_text().splitlines()
    first = lines[0]
    (folder / "queries.jsonl").write_text("\n".join([first, lines[1], first.replace('"text": "', '"text": "other ')]))
    return refused(lambda: load_dataset(folder), "queries.jsonl", "lines 1 and 3")


@case("1", "span metrics with overlapping chunks", "chunks 0:80 and 40:120 over reference 0:100")
def span_overlap(tmp: Path) -> tuple[str, str]:
    from workbench.metrics import span_scores
    from workbench.types import Span

    scores = span_scores([Span(doc_id="d", start=0, end=80), Span(doc_id="d", start=40, end=120)],
                         [Span(doc_id="d", start=0, end=100)])
    # By hand, Chroma's definition: intersection 100, retrieved characters 80 + 80 = 160.
    if abs(scores.precision - 100 / 160) < 1e-9 and abs(scores.iou - 100 / 160) < 1e-9 and scores.recall == 1.0:
        return RECOVERED, f"precision {scores.precision:.4f} = IoU = 100/160 by hand (Chroma's counting)"
    return FAIL, f"precision {scores.precision:.4f}, IoU {scores.iou:.4f}; by hand 0.6250"


def _generator(server: Any, **overrides: Any) -> Any:
    from workbench.config import GenerationConfig
    from workbench.generation import AnthropicGenerator

    config = GenerationConfig(kind="anthropic", base_url=server.url, backoff_base_s=0.05, backoff_max_s=2.0,
                              timeout_s=overrides.pop("timeout_s", 3.0), **overrides)
    return AnthropicGenerator(config, sleep=lambda s: None)


CONTEXT_TEXT = "Mount Everest is the highest mountain on Earth. Its summit is 8,849 metres high."


def _context() -> list[Any]:
    from workbench.types import Chunk, Hit

    chunk = Chunk(id="d:1", doc_id="d", text=CONTEXT_TEXT, start=0, end=len(CONTEXT_TEXT))
    return [Hit(chunk=chunk, score=1.0, rank=1)]


@case("1", "trace cost after retries", "a stalled stream, then a 529, then an answer")
def cost_after_retries(tmp: Path) -> tuple[str, str]:
    from anthropic_server import AnthropicServer, Reply, Stall, Status

    os.environ["ANTHROPIC_API_KEY"] = "sk-ant-hostile"
    with AnthropicServer(api_key="sk-ant-hostile", responder=lambda body: Reply(text="It is 8,849 m [1].")) as server:
        server.script(Stall(deltas=2, seconds=5), Status(529))
        gen = _generator(server, timeout_s=0.5)
        answer = gen.generate("How high is Everest?", _context())
        spent = gen.spent_usd()
    if abs(answer.usage.cost_usd - spent) < 1e-12 and spent > 0:
        return RECOVERED, f"answer cost (what its trace records) ${answer.usage.cost_usd:.6f} = all billed attempts"
    return FAIL, f"answer cost ${answer.usage.cost_usd:.6f}, generator spent ${spent:.6f}"


# --- 2. never read or write outside where the user pointed -------------------------------------


@case("2", "folder loader follows links out", "links to /etc/passwd, /etc, ../outside.md; a loop")
def link_out(tmp: Path) -> tuple[str, str]:
    from workbench.datasets import load_folder

    (tmp / "docs").mkdir()
    (tmp / "docs" / "a.txt").write_text("alpha")
    (tmp / "docs" / "passwd.txt").symlink_to("/etc/passwd")
    (tmp / "docs" / "etc").symlink_to("/etc")
    (tmp / "outside.md").write_text("root: outside the folder")
    (tmp / "docs" / "up.md").symlink_to("../outside.md")
    (tmp / "docs" / "loop.txt").symlink_to("loop.txt")
    dataset = load_folder(tmp / "docs")
    if "root:" in "".join(d.text for d in dataset.documents) or len(dataset.documents) != 1:
        return FAIL, f"read {[d.id for d in dataset.documents]}"
    return RECOVERED, f"left out and reported: {'; '.join(getattr(dataset, 'left_out', ()) or ['(not reported)'])}"


def _traces_page(tmp: Path, typed: str) -> tuple[str, str]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "1_Traces.py"), default_timeout=60)
    at.run()  # opens the configured store ($WORKBENCH_STORE, this case's runs.sqlite): allowed
    before = set(p.name for p in tmp.iterdir())
    at.sidebar.text_input(key="traces_store").set_value(typed).run()
    created = {p.name for p in tmp.iterdir()} - before - {"runs.sqlite", "runs.sqlite-wal", "runs.sqlite-shm"}
    if at.exception:
        return FAIL, f"uncaught: {at.exception[0].message}"
    if created:
        return FAIL, f"created {sorted(created)}"
    errors = [e.value for e in at.error]
    return (OK, errors[0]) if errors else (FAIL, "no message shown")


@case("2", "Traces page opens any typed path", "sqlite:///missing.sqlite (a URL, no such store)", timeout_s=120)
def traces_url(tmp: Path) -> tuple[str, str]:
    return _traces_page(tmp, "sqlite:///missing.sqlite")


@case("2", "Traces page opens any typed path", "newdir/sub/x.sqlite", timeout_s=120)
def traces_newdir(tmp: Path) -> tuple[str, str]:
    return _traces_page(tmp, "newdir/sub/x.sqlite")


@case("2", "Traces page opens any typed path", "a NUL in the path", timeout_s=120)
def traces_nul(tmp: Path) -> tuple[str, str]:
    return _traces_page(tmp, "runs\0.sqlite")


# --- 3. nothing the app accepts may crash it (the app's path: store the upload, load it) --------


@case("3", "encrypted PDF of an unsupported kind", "4 handlers pypdf cannot open, AES-256 with a password")
def encrypted(tmp: Path) -> tuple[str, str]:
    from hostile_files import ENCRYPTIONS, encrypted_pdf

    return first_failure([bad_document(tmp / kind, "x.pdf", encrypted_pdf(kind)) for kind in [*ENCRYPTIONS, "AES-256"]])


@case("3", "PDF decompression bomb", "40 MB of spaces, 20 MB of text operators, 6,000 pages")
def pdf_bomb(tmp: Path) -> tuple[str, str]:
    from hostile_files import bomb_pdf, many_pages_pdf

    return first_failure([bad_document(tmp / n, "bomb.pdf", data) for n, data in
                          (("blank", bomb_pdf("blank")), ("text", bomb_pdf("text")), ("pages", many_pages_pdf(6000)))])


@case("3", "HTML with a malformed marked section", "<![if !IE]> ... <![ unclosed")
def marked_section(tmp: Path) -> tuple[str, str]:
    html = b"<html><body><p>alpha</p><![if !IE]><p>beta</p><![endif]><![ broken <p>omega</p></body></html>"
    try:
        _, dataset = upload_then_load(tmp, {"page.html": html})
    except Exception as exc:
        return judged(exc, "page.html")
    text = dataset.documents[0].text
    return (RECOVERED, f"parsed: {text!r}") if "alpha" in text and "beta" in text else (FAIL, f"text {text!r}")


@case("3", "questions.csv with an oversized field", "a 200,000-character reference field")
def csv_field(tmp: Path) -> tuple[str, str]:
    questions = b"question,references,corpus_id\nq?," + b"x" * 200_000 + b",a\n"
    return refused(lambda: upload_then_load(tmp, {"a.txt": b"alpha"}, {"questions.csv": questions}),
                   "questions.csv", "line")


@case("3", "queries.jsonl rows of the wrong shape", 'a list row; a "text" that is a number')
def queries_shape(tmp: Path) -> tuple[str, str]:
    qrels = {"test.tsv": b"query-id\tcorpus-id\tscore\nq\ta.txt\t1\n"}
    outcomes = [refused(lambda q=rows, n=i: upload_then_load(tmp / str(n), {"a.txt": b"alpha"},
                                                             {"queries.jsonl": q, **qrels}), "queries.jsonl", "line")
                for i, rows in enumerate((b'["q", "text"]\n', b'{"_id": "q", "text": 42}\n'))]
    return first_failure(outcomes)


@case("3", "file names with NUL or over 255 bytes", "a 300-byte name and a NUL in a loose name")
def bad_names(tmp: Path) -> tuple[str, str]:
    try:
        stored, dataset = upload_then_load(tmp, {"n" * 296 + ".txt": b"long", "nul\0.txt": b"nul", "ok.txt": b"ok"})
    except Exception as exc:
        return FAIL, f"{type(exc).__name__}: {exc}"
    ok = [d.id for d in dataset.documents] == ["ok.txt"] and len(stored.skipped) == 2
    return (RECOVERED, "kept ok.txt; skipped: " + "; ".join(s[-60:] for s in stored.skipped)) if ok else (
        FAIL, f"documents {[d.id for d in dataset.documents]}")


@case("3", "zip with a file and a folder of one name", "x.txt and x.txt/y.txt")
def zip_clash(tmp: Path) -> tuple[str, str]:
    from hostile_files import zipped

    try:
        stored, dataset = upload_then_load(tmp, {"z.zip": zipped({"x.txt": b"file", "x.txt/y.txt": b"inner",
                                                                   "b.md": b"# b"})})
    except Exception as exc:
        return judged(exc, "x.txt")
    return RECOVERED, f"kept {[d.id for d in dataset.documents]}; skipped {list(stored.skipped)}"


@case("3", "questions path that is a folder", "questions.csv/ holding a file")
def questions_folder(tmp: Path) -> tuple[str, str]:
    from workbench.datasets import load_dataset

    (tmp / "docs" / "questions.csv").mkdir(parents=True)
    (tmp / "docs" / "a.txt").write_text("alpha")
    (tmp / "docs" / "questions.csv" / "b.txt").write_text("beta")
    return refused(lambda: load_dataset(tmp / "docs"), "questions.csv", "folder")


# --- 4. concurrency and process hygiene ----------------------------------------------------------

SPEC = """name = "race"
dataset = "{data}"
[base.chunking]
method = "fixed"
tokenizer = "whitespace"
[base.retrieval]
kind = "bm25"
[space]
"chunking.size" = {sizes}
"""


@case("4", "two processes run one sweep on one store", "6 trials, two `workbench sweep` at once", timeout_s=300)
def sweep_race(tmp: Path) -> tuple[str, str]:
    data = tiny_beir(tmp / "tiny")
    (tmp / "spec.toml").write_text(SPEC.format(data=data, sizes=[32, 48, 64, 96, 128, 256]))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "workbench", "sweep", "spec.toml", "--store", "runs.sqlite", "--yes", "--quiet"]
    procs = [subprocess.Popen(args, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=280)[1] for p in procs]
    if any(p.returncode for p in procs):
        return FAIL, f"exit {[p.returncode for p in procs]}: {errors[0][-200:] or errors[1][-200:]}"
    from workbench.store import RunStore

    runs = RunStore(tmp / "runs.sqlite").runs()
    hashes = {r.config_hash for r in runs}
    if len(runs) == 6 and len(hashes) == 6:
        return RECOVERED, "6 runs stored for 6 trials: each computed once"
    return FAIL, f"{len(runs)} runs for 6 trials"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _kill_driver(tmp: Path, how: signal.Signals) -> tuple[str, str]:
    data = tiny_beir(tmp / "tiny", n_docs=200)
    (tmp / "spec.toml").write_text(SPEC.format(data=data, sizes=list(range(16, 400, 4))))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen([sys.executable, "-m", "workbench", "sweep", "spec.toml", "--store", "runs.sqlite",
                               "--yes", "--quiet", "--workers", "2"], cwd=tmp, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.monotonic() + 120, []
    while time.monotonic() < deadline and len(workers) < 2 and driver.poll() is None:
        time.sleep(0.5)
        workers = _children(driver.pid)
    if len(workers) < 2:
        driver.kill()
        return FAIL, f"never saw two workers (driver exit {driver.poll()})"
    time.sleep(2)
    driver.send_signal(how)
    driver.wait(30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    left = [w for w in workers if _alive(w)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return (FAIL, f"workers {left} outlived the driver by 20 s") if left else (
        RECOVERED, f"both workers ended with their driver ({how.name})")


@case("4", "workers outlive a killed driver", "kill -9 of `workbench sweep --workers 2`", timeout_s=240)
def workers_die_kill(tmp: Path) -> tuple[str, str]:
    return _kill_driver(tmp, signal.SIGKILL)


@case("4", "workers outlive a killed driver", "SIGTERM to `workbench sweep --workers 2`", timeout_s=240)
def workers_die_term(tmp: Path) -> tuple[str, str]:
    return _kill_driver(tmp, signal.SIGTERM)


# --- 5. errors that say what and where ------------------------------------------------------------


@case("5", "binary TOML or sweep spec", "512 random bytes as a config, then as a sweep spec")
def binary_toml(tmp: Path) -> tuple[str, str]:
    from workbench.config import load_config
    from workbench.sweep import load_sweep_spec

    path = tmp / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00" + os.urandom(509))
    outcomes = [refused(lambda: load_config(path), "binary.toml", "UTF-8"),
                refused(lambda: load_sweep_spec(path), "binary.toml", "UTF-8")]
    return first_failure(outcomes)


@case("5", "sweep spec with dataset = 5", "dataset = 5")
def sweep_dataset_int(tmp: Path) -> tuple[str, str]:
    (tmp / "spec.toml").write_text('dataset = 5\n[space]\n"chunking.size" = [64]\n')
    done = cli(tmp, "sweep", "spec.toml", "--store", "runs.sqlite", "--yes", "--quiet")
    message = (done.stderr.strip().splitlines() or ["(nothing)"])[-1]
    if done.returncode == 2 and "dataset" in message and "Traceback" not in done.stderr:
        return OK, message
    return FAIL, f"exit {done.returncode}: {message}"


@case("5", "a 10 MB value in a message", "embedding.model = 10 MB of 'x', then the model is loaded")
def huge_model_name(tmp: Path) -> tuple[str, str]:
    from workbench.config import load_config
    from workbench.embedding import load_embedder

    path = tmp / "c.toml"
    path.write_text(f'[embedding]\nmodel = "{"x" * 10_000_000}"\n')
    return refused(lambda: load_embedder(load_config(path).embedding).dimension, "model",
                   types=(ValueError, OSError, RuntimeError, ImportError))


@case("5", "retry-after of infinity", "429 with retry-after: inf, no fallback")
def retry_after_inf(tmp: Path) -> tuple[str, str]:
    from anthropic_server import AnthropicServer, Status

    from workbench.generation import GenerationError

    os.environ["ANTHROPIC_API_KEY"] = "sk-ant-hostile"
    with AnthropicServer(api_key="sk-ant-hostile") as server:
        server.script(Status(429, headers={"retry-after": "inf"}))
        gen = _generator(server)
        return refused(lambda: gen.generate("q", _context()), "retry-after", types=(GenerationError,))


@case("5", "run store truncated to 0 bytes", "runs.sqlite of 0 bytes, `runs list`")
def store_empty(tmp: Path) -> tuple[str, str]:
    (tmp / "runs.sqlite").write_bytes(b"")
    done = cli(tmp, "runs", "list")  # $WORKBENCH_STORE is this case's runs.sqlite
    message = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["(nothing)"])[-1]
    if "not a run store" in message.lower() and "Traceback" not in done.stderr:
        return OK, message
    return FAIL, f"exit {done.returncode}: {message}"


@case("5", "non-UTF-8 qrels or questions", "qrels/test.tsv and questions.csv in Latin-1")
def not_utf8(tmp: Path) -> tuple[str, str]:
    from workbench.datasets import load_dataset

    folder = tiny_beir(tmp / "beir")
    qrels = folder / "qrels" / "test.tsv"
    qrels.write_bytes(qrels.read_bytes() + "caf\xe9\n".encode("latin-1"))
    first = refused(lambda: load_dataset(folder), "test.tsv", "UTF-8", "line")
    (tmp / "docs").mkdir()
    (tmp / "docs" / "a.txt").write_text("alpha")
    (tmp / "docs" / "questions.csv").write_bytes("question,references,corpus_id\ncaf\xe9?,[],a\n".encode("latin-1"))
    second = refused(lambda: load_dataset(tmp / "docs"), "questions.csv", "UTF-8", "line 2")
    return first_failure([first, second])


@case("5", "JSON rows without _id or text", 'corpus row {"title": "x"}; query row {"_id": "q"}')
def missing_fields(tmp: Path) -> tuple[str, str]:
    from workbench.datasets import load_dataset

    folder = tiny_beir(tmp / "beir")
    corpus = (folder / "corpus.jsonl").read_text()
    (folder / "corpus.jsonl").write_text(corpus + '\n{"title": "x"}\n')
    first = refused(lambda: load_dataset(folder), "corpus.jsonl", "_id", "line")
    (folder / "corpus.jsonl").write_text(corpus)
    (folder / "queries.jsonl").write_text('{"_id": "q"}\n')
    second = refused(lambda: load_dataset(folder), "queries.jsonl", "text", "line 1")
    return first_failure([first, second])


@case("5", "JSON that is not JSON", "queries.jsonl of binary junk; 100,000 nested brackets")
def not_json(tmp: Path) -> tuple[str, str]:
    from workbench.datasets import load_dataset

    folder = tiny_beir(tmp / "beir")
    (folder / "queries.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    first = refused(lambda: load_dataset(folder), "queries.jsonl", "line 1")
    (folder / "queries.jsonl").write_text("{'_id': 'q', 'text': 'single quotes'}\n")
    second = refused(lambda: load_dataset(folder), "queries.jsonl", "not valid JSON")
    return first_failure([first, second])


# --- 6. found when used as a new user would ---------------------------------------------------------


@case("6", "answer names the generator that produced it", "the offline extractive generator answers")
def names_generator(tmp: Path) -> tuple[str, str]:
    from workbench.generation.offline import ExtractiveGenerator

    answer = ExtractiveGenerator(sentences=1, scorer="lexical").generate("How high is Everest?", _context())
    source = (ROOT / "views" / "playground.py").read_text() if (ROOT / "views" / "playground.py").exists() else ""
    if "answered with `{response.model}`" in source:
        return FAIL, "the Playground still shows the routed model (views/playground.py)"
    model = answer.usage.model
    return (RECOVERED, f"the answer's usage names {model!r}") if not model.startswith("claude") else (
        FAIL, f"the extractive answer claims {model!r}")


@case("6", "citation numbers disagree", "an answer citing [1] and [3]")
def citation_numbers(tmp: Path) -> tuple[str, str]:
    from workbench.generation.base import cited_passages, parse_citations
    from workbench.types import Chunk, Hit

    hits = [Hit(chunk=Chunk(id=f"d:{n}", doc_id="d", text=f"passage {n}", start=0, end=9), score=1.0, rank=n)
            for n in (1, 2, 3)]
    entries = cited_passages(parse_citations("First [1]. Third [3].", hits), hits)
    numbers = [n for n, _ in entries]
    return (RECOVERED, f"list numbered {numbers}") if numbers == [1, 3] else (FAIL, f"list numbered {numbers}")


@case("6", "extractive answer is a wall of text", "Cranfield's tokenised text, 3 sentences")
def extractive_wall(tmp: Path) -> tuple[str, str]:
    from workbench.datasets import load_dataset
    from workbench.generation.offline import ExtractiveGenerator
    from workbench.types import Chunk, Hit

    docs = load_dataset("cranfield").documents[:5]
    hits = [Hit(chunk=Chunk(id=d.id, doc_id=d.id, text=d.text, start=0, end=len(d.text)), score=1.0, rank=i)
            for i, d in enumerate(docs, 1)]
    answer = ExtractiveGenerator(sentences=3, scorer="lexical").generate("aerodynamics of a wing slipstream", hits)
    whole = sum(len(d.text) for d in docs)
    marks = answer.text.count("[")
    if marks <= 3 and len(answer.text) < 1500:
        return RECOVERED, f"{marks} cited sentences, {len(answer.text)} characters (context {whole:,})"
    return FAIL, f"{marks} citations, {len(answer.text):,} characters"


@case("6", "hybrid RRF breaks ties by argument order", "dense and BM25 lists with tied fused scores")
def rrf_ties(tmp: Path) -> tuple[str, str]:
    from workbench.retrieval.hybrid import reciprocal_rank_fusion
    from workbench.types import Chunk, Hit

    def hits(ids: str) -> list[Hit]:
        return [Hit(chunk=Chunk(id=c, doc_id=c, text=c, start=0, end=1), score=1.0 / r, rank=r)
                for r, c in enumerate(ids, 1)]

    dense, sparse = hits("abcd"), hits("badc")  # a/b and c/d tie in fused score
    one = [h.chunk.id for h in reciprocal_rank_fusion(dense, sparse)]
    two = [h.chunk.id for h in reciprocal_rank_fusion(sparse, dense)]
    return (RECOVERED, f"same order either way: {one}") if one == two else (FAIL, f"{one} against {two}")


@case("6", "latency mixes cached and cold work", "dense then hybrid in one process: query embedding timed",
      timeout_s=240)
def latency_stage(tmp: Path) -> tuple[str, str]:
    from workbench.config import PipelineConfig, replace_path
    from workbench.datasets import load_dataset
    from workbench.experiment import run_experiment

    dataset = load_dataset(tiny_beir(tmp / "beir", n_docs=15))
    base = replace_path(PipelineConfig(name="d"), "chunking.method", "none")
    run_experiment(replace_path(base, "retrieval.kind", "dense"), dataset)
    hybrid = run_experiment(replace_path(base, "retrieval.kind", "hybrid"), dataset)
    stages = sorted({s for row in hybrid.rows for s in row.stage_latency_s})
    embed = [s for s in stages if "embed" in s]
    stats = dict(hybrid.embedding_stats)
    if embed and stats:
        return RECOVERED, f"stages {stages}; embedding stats {stats}"
    return FAIL, f"stages {stages}; embedding stats {stats}"


@case("6", "`make run` pays for Streamlit's file watcher", ".streamlit/config.toml")
def file_watcher(tmp: Path) -> tuple[str, str]:
    import tomllib

    path = ROOT / ".streamlit" / "config.toml"
    watcher = tomllib.loads(path.read_text()).get("server", {}).get("fileWatcherType") if path.exists() else None
    return (RECOVERED if watcher == "none" else FAIL), f"fileWatcherType = {watcher!r}"


@case("6", "`runs list` on a fresh clone", "no run store yet")
def runs_list_fresh(tmp: Path) -> tuple[str, str]:
    done = cli(tmp, "runs", "list")
    out = (done.stdout + done.stderr).strip().splitlines() or ["(nothing)"]
    created = (tmp / "runs.sqlite").exists()
    if done.returncode == 0 and "no runs" in out[-1].lower():
        return RECOVERED, out[-1] + (" (and created an empty store)" if created else "")
    return FAIL, f"exit {done.returncode}: {out[-1]}"


# --- the runner ------------------------------------------------------------------------------------


def _child(item: Case, folder: Path, send: Any) -> None:
    os.chdir(folder)
    os.environ["WORKBENCH_CACHE_DIR"] = str(folder / "cache")
    os.environ["WORKBENCH_STORE"] = str(folder / "runs.sqlite")
    try:
        send.send(item.run(folder))
    except BaseException as exc:  # a case that crashes is a finding, reported as such
        send.send((FAIL, f"uncaught {type(exc).__name__}: {exc}"))


def run_case(item: Case, base: Path, timeout_s: float | None) -> tuple[str, str, float]:
    folder = Path(tempfile.mkdtemp(dir=base, prefix=item.name + "-"))
    receive, send = multiprocessing.Pipe(duplex=False)
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(item, folder, send))
    t0 = time.monotonic()
    proc.start()
    limit = timeout_s or item.timeout_s
    got = receive.poll(limit)
    outcome = receive.recv() if got else (FAIL, f"no outcome within {limit:.0f} s (hung or killed)")
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    shutil.rmtree(folder, ignore_errors=True)
    return outcome[0], outcome[1], time.monotonic() - t0


def one_line(text: str, width: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the cases whose class or input holds this word")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per case (default: each case's own)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="hostile-"))
    for name, value in (("XDG_CACHE_HOME", base / "xdg"), ("HF_HUB_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ[name] = str(value)
    os.environ.pop("ANTHROPIC_API_KEY", None)
    chosen = sorted((c for c in CASES if args.only.lower() in f"{c.klass} {c.label}".lower()), key=lambda c: c.section)
    rows = []
    for item in chosen:
        verdict, message, seconds = run_case(item, base, args.timeout)
        rows.append((item, verdict, message))
        print(f"  {verdict:11} {seconds:6.1f} s  {item.section}. {item.klass}: {one_line(item.label, 60)}",
              file=sys.stderr, flush=True)
    shutil.rmtree(base, ignore_errors=True)
    print("| § | class | input | outcome | verdict |\n|---|---|---|---|---|")
    for item, verdict, message in rows:
        outcome = one_line(message, 150).replace("|", "/")
        print(f"| {item.section} | {item.klass} | {one_line(item.label, 60)} | {outcome} | {verdict} |")
    fails = sum(v == FAIL for _, v, _ in rows)
    print(f"\n{len(rows)} cases: {sum(v == OK for _, v, _ in rows)} clear errors, "
          f"{sum(v == RECOVERED for _, v, _ in rows)} recovered, {fails} FAIL")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
