"""Synthetic evaluation sets: one question written per sampled chunk, tied to that chunk's span.

For a corpus without questions, `generate_questions` samples chunks (seeded), asks a question
writer for one question each passage answers, cleans the reply and drops empty or degenerate
ones. Every query's reference span is the exact characters of its source document the writer
was shown, and its one relevant document is that document, so the set is scored like any
span-annotated set. The dataset's name ends in `SYNTHETIC_SUFFIX`, and `build_synthetic_set`
keeps it as a questions.csv (the span-reference format `load_folder` reads) beside the upload,
so the same inputs are never generated twice.

Writers: "local" (the packaged Gemma 3 270M base model through llama-cpp, offline) and
"anthropic" (Claude). The extractive generator has no model to write with and is refused.
Questions written from one config's chunks favour that chunking in span metrics.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .config import GenerationConfig
from .datasets import Dataset, DatasetError, read_span_questions
from .io import atomic_write_text
from .types import Chunk, Span

if TYPE_CHECKING:
    from .types import Prompt

__all__ = [
    "QuestionWriter",
    "WRITERS",
    "make_question_writer",
    "LocalQuestionWriter",
    "AnthropicQuestionWriter",
    "clean_question",
    "generate_questions",
    "save_questions",
    "load_questions",
    "build_synthetic_set",
    "is_synthetic",
    "SYNTHETIC_SUFFIX",
]

SYNTHETIC_SUFFIX = " (synthetic questions)"
MAX_PASSAGE_CHARS = 1200  # what a writer is shown of a chunk (and the span it is tied to)
MIN_PASSAGE_WORDS = 12  # shorter chunks rarely support a question
MAX_QUESTION_TOKENS = 32
# A base model continues a pattern: one worked example, then the passage.
LOCAL_EXAMPLE = (
    "Passage: The Eiffel Tower in Paris was finished in 1889 and is 330 metres tall.\n"
    "Question: When was the Eiffel Tower finished?\n\n"
)
ANTHROPIC_INSTRUCTIONS = (
    "You write evaluation questions for a search system. Given a passage, write one short, "
    "specific question that the passage answers, answerable without seeing the passage. "
    "Reply with the question only, on one line, ending with a question mark."
)


class QuestionWriter(Protocol):
    """Writes one question that `passage` answers (raw text; `clean_question` tidies it).

    `name` says who writes, for the label of a saved set.
    """

    name: str

    def write(self, passage: str) -> str: ...


@runtime_checkable
class BatchQuestionWriter(Protocol):
    """A question writer that can also write many questions in one Message Batch."""

    name: str

    def write(self, passage: str) -> str: ...

    def write_many(self, passages: Sequence[str], *, poll: Any = None) -> list[str]: ...


class LocalQuestionWriter:
    """The packaged Gemma 3 270M (a base model) completing "Passage: ...\\nQuestion:" (greedy at temperature 0)."""

    def __init__(self, config: GenerationConfig) -> None:
        from .generation import LocalGenerator

        self.llm = LocalGenerator(config).llm
        self.temperature = config.temperature
        self.name = "local Gemma 3 270M"

    @classmethod
    def from_config(cls, config: GenerationConfig) -> LocalQuestionWriter:
        """Build from `generation.local_n_ctx`, `local_threads` and `temperature`."""
        return cls(config)

    def write(self, passage: str) -> str:
        """The model's continuation up to the end of the line (at most `MAX_QUESTION_TOKENS`)."""
        prompt = f"{LOCAL_EXAMPLE}Passage: {passage}\nQuestion:"
        out = self.llm.create_completion(prompt, max_tokens=MAX_QUESTION_TOKENS, temperature=self.temperature,
                                         stop=["\n"])
        return out["choices"][0]["text"]


class AnthropicQuestionWriter:
    """Claude through `AnthropicGenerator` (its retries and fallbacks), asked for one question."""

    def __init__(self, config: GenerationConfig) -> None:
        from .generation import AnthropicGenerator

        config = replace(config, max_tokens=64)
        self.client = AnthropicGenerator(config)
        self.name = f"Claude ({config.model})"

    @classmethod
    def from_config(cls, config: GenerationConfig) -> AnthropicQuestionWriter:
        """Build from the generation config (model, endpoint, retries); the key from the environment."""
        return cls(config)

    def write(self, passage: str) -> str:
        """Claude's reply to the passage (streamed through the usual retries)."""
        text, _ = self.client.complete(self._prompt(passage))
        return text

    def _prompt(self, passage: str) -> Prompt:
        from .types import Prompt

        return Prompt(
            system=({"type": "text", "text": ANTHROPIC_INSTRUCTIONS},),
            messages=({"role": "user", "content": f"Passage:\n{passage}"},),
        )

    def write_many(self, passages: Sequence[str], *, poll: Any = None) -> list[str]:
        """Claude's replies to many passages through one Message Batch (the batch price); a request
        that failed in the batch gets "" (a question `generate_questions` drops)."""
        from .batches import BatchRequest, PollPolicy, run_batch
        from .generation import anthropic_client

        config = self.client.config
        requests = [BatchRequest(custom_id=f"p{i}", model=self.client.models[0], max_tokens=config.max_tokens,
                                 prompt=self._prompt(p)) for i, p in enumerate(passages)]
        client = anthropic_client(base_url=config.base_url or None, timeout=config.timeout_s)
        run = run_batch(client, requests, poll=poll or PollPolicy(), cache_ttl=config.cache_ttl)
        return [run.results[r.custom_id].text for r in requests]


WRITERS: dict[str, Callable[[GenerationConfig], QuestionWriter]] = {
    "local": LocalQuestionWriter.from_config,
    "anthropic": AnthropicQuestionWriter.from_config,
}


def make_question_writer(config: GenerationConfig) -> QuestionWriter:
    """The question writer for `config.kind`.

    Raises:
        ValueError: kind "extractive" (it cannot write) or an unknown kind; the message lists the known ones.
        MissingAPIKeyError: kind "anthropic" without a key.
        ImportError: kind "local" without the `local` extra.
    """
    if config.kind == "extractive":
        raise ValueError(
            "the extractive generator copies sentences and cannot write questions; pick generation.kind "
            f"one of {sorted(WRITERS)} (\"local\" runs offline with the packaged Gemma model)"
        )
    try:
        factory = WRITERS[config.kind]
    except KeyError:
        raise ValueError(f"unknown question writer {config.kind!r}; choose one of {sorted(WRITERS)}") from None
    return factory(config)


_LEAD = re.compile(r"^\s*(?:question\s*\d*\s*[:.)-]|q\s*[:.)-]|\d+\s*[.)]|[-*•])\s*", re.IGNORECASE)


def clean_question(raw: str) -> str:
    """The first question in a writer's reply, tidied; "" when there is none worth asking.

    Keeps the first line up to its first "?", drops a "Question:"/numbering prefix and quotes,
    and rejects replies with no question mark, fewer than three words or no letters.
    """
    line = next((ln for ln in raw.strip().splitlines() if ln.strip()), "")
    if "?" not in line:
        return ""
    question = _LEAD.sub("", line[: line.index("?")]).strip(" \t\"'`“”‘’*")
    question = re.sub(r"\s+", " ", question)
    if len(question.split()) < 3 or not re.search(r"[A-Za-z]", question):
        return ""
    return question[0].upper() + question[1:] + "?"


_QUESTION_WORDS = frozenset(
    "what which when where why how who whom whose does did do is are was were the this that these those with "
    "from about into name kind type there their they have has been".split()
)


def _grounded(question: str, passage: str) -> bool:
    """Whether the question shares a content word (4+ letters, not a question word) with the passage."""
    words = {w for w in re.findall(r"[a-z0-9]{4,}", question.lower()) if w not in _QUESTION_WORDS}
    return bool(words & set(re.findall(r"[a-z0-9]{4,}", passage.lower())))


def _passage(chunk: Chunk) -> Span:
    """The span of the chunk a writer is shown: at most `MAX_PASSAGE_CHARS`, cut at a space, trimmed."""
    text = chunk.text
    if len(text) > MAX_PASSAGE_CHARS:
        cut = text.rfind(" ", 0, MAX_PASSAGE_CHARS)
        text = text[: cut if cut > MAX_PASSAGE_CHARS // 2 else MAX_PASSAGE_CHARS]
    start = chunk.start + len(text) - len(text.lstrip())
    return Span(doc_id=chunk.doc_id, start=start, end=chunk.start + len(text.rstrip()))


def generate_questions(
    dataset: Dataset,
    chunks: Sequence[Chunk],
    writer: QuestionWriter,
    *,
    n: int,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    batch: bool = False,
) -> Dataset:
    """A synthetic evaluation set: one question per sampled chunk, tied to the chunk's span.

    Chunks are visited in a seeded random order; each is shown to `writer` (at most
    `MAX_PASSAGE_CHARS` of it) until `n` questions are kept or `2 * n` chunks were tried.
    Empty, degenerate (see `clean_question`) and repeated questions are dropped, and so are
    questions that share no content word with their passage (a writer's invention).

    Args:
        dataset: the documents the chunks come from (its own questions are replaced).
        chunks: chunks of `dataset.documents` (e.g. `build_pipeline(config, dataset).chunks`).
        writer: writes one question per passage (see `make_question_writer`).
        n: how many questions to keep.
        seed: the sampling seed.
        progress: called with (chunks tried, chunks that may be tried) after each chunk.
        batch: write every candidate's question in one Message Batch (`writer.write_many`, at the
            batch price) instead of one call per chunk until `n` are kept.

    Returns:
        A dataset named `dataset.name + SYNTHETIC_SUFFIX` with queries "1".."m" (m <= n), each
        with one reference span (the passage's characters in its document) and that document
        as its one relevant document.

    Raises:
        ValueError: `n` is not positive, or no chunk is long enough to ask about.
        DatasetError: a chunk is not a piece of `dataset`'s documents, or no question was kept.
    """
    if n <= 0:
        raise ValueError(f"n={n} must be positive: the number of questions to write")
    texts = {d.id: d.text for d in dataset.documents}
    for c in chunks:
        if texts.get(c.doc_id, "")[c.start:c.end] != c.text:
            raise DatasetError(f"chunk {c.id!r} is not characters {c.start}:{c.end} of a document of {dataset.name!r}; "
                               "chunk this dataset's documents")
    eligible = [c for c in chunks if len(c.text.split()) >= MIN_PASSAGE_WORDS]
    if not eligible:
        raise ValueError(
            f"no chunk of {dataset.name!r} has {MIN_PASSAGE_WORDS} words or more to ask about; "
            "use larger chunks or longer documents"
        )
    order = random.Random(seed).sample(eligible, len(eligible))[: 2 * n]
    queries: dict[str, str] = {}
    spans: dict[str, tuple[Span, ...]] = {}
    seen: set[str] = set()
    passages = [texts[c.doc_id][_passage(c).start:_passage(c).end] for c in order]
    if batch and not isinstance(writer, BatchQuestionWriter):
        raise ValueError(f"{writer.name} cannot write through the Batch API; use generation.kind='anthropic'")
    written = iter(writer.write_many(passages)) if batch else None
    for tried, (chunk, passage) in enumerate(zip(order, passages, strict=True), 1):
        span = _passage(chunk)
        question = clean_question(next(written) if written is not None else writer.write(passage))
        if question and _grounded(question, passage) and question.lower() not in seen:
            seen.add(question.lower())
            qid = str(len(queries) + 1)
            queries[qid] = question
            spans[qid] = (span,)
        if progress is not None:
            progress(tried, len(order))
        if len(queries) == n:
            break
    if not queries:
        raise DatasetError(
            f"the question writer produced no usable question from {len(order)} chunks of {dataset.name!r}; "
            "try another writer (generation.kind) or seed"
        )
    return Dataset(
        name=dataset.name + SYNTHETIC_SUFFIX,
        documents=dataset.documents,
        queries=queries,
        qrels={q: {sp[0].doc_id: 1} for q, sp in spans.items()},
        spans=spans,
        skipped=dataset.skipped,
    )


def is_synthetic(dataset: Dataset) -> bool:
    """Whether `dataset`'s questions were written by `generate_questions`."""
    return dataset.name.endswith(SYNTHETIC_SUFFIX)


def save_questions(dataset: Dataset, path: Path, *, writer: str = "") -> None:
    """Write a dataset's questions as a span-reference questions.csv, atomically.

    Columns `question`, `references` (JSON start/end indexes), `corpus_id` (what `load_folder`
    reads), and `generator`, which labels each row as synthetic and says who wrote it.
    """
    out = io.StringIO()
    table = csv.writer(out, lineterminator="\n")
    table.writerow(["question", "references", "corpus_id", "generator"])
    for qid, question in dataset.queries.items():
        spans = dataset.spans.get(qid, ())
        refs = [{"start_index": s.start, "end_index": s.end} for s in spans]
        table.writerow([question, json.dumps(refs), spans[0].doc_id if spans else "", f"synthetic: {writer}"])
    atomic_write_text(Path(path), out.getvalue())


def load_questions(dataset: Dataset, path: Path) -> Dataset:
    """`dataset` with the synthetic questions saved at `path` (see `save_questions`).

    Raises:
        DatasetError: the file is malformed or its spans do not fit `dataset`'s documents.
    """
    queries, spans = read_span_questions(Path(path), dataset.documents)
    name = dataset.name if is_synthetic(dataset) else dataset.name + SYNTHETIC_SUFFIX
    return replace(dataset, name=name, queries=queries, spans=spans,
                   qrels={q: {s.doc_id: 1 for s in sp} for q, sp in spans.items()})


def build_synthetic_set(
    dataset: Dataset,
    chunks: Sequence[Chunk],
    config: GenerationConfig,
    *,
    folder: Path,
    n: int,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Dataset, Path]:
    """A synthetic set for `dataset`, read from `folder` if these inputs built one before.

    The file is `folder/synthetic/questions-<key>.csv`, the key a hash of the documents, the
    chunks, the writer (kind and model) and `n` and `seed`; it is written atomically.

    Args:
        dataset: documents without questions (e.g. an upload).
        chunks: chunks of its documents the questions are written from.
        config: the generation config whose `kind` ("local" or "anthropic") writes.
        folder: where the set is kept (the upload's own folder).
        n: how many questions.
        seed: the chunk-sampling seed.
        progress: see `generate_questions`.

    Returns:
        The dataset with its synthetic questions, and the file they are kept in.

    Raises:
        ValueError, DatasetError, MissingAPIKeyError, ImportError: see `make_question_writer`
            and `generate_questions`.
    """
    model = config.model if config.kind == "anthropic" else ""
    key = hashlib.sha256(json.dumps([
        dataset.fingerprint(), [[c.doc_id, c.start, c.end] for c in chunks], config.kind, model,
        config.temperature, n, seed, MAX_PASSAGE_CHARS,
    ]).encode()).hexdigest()[:16]
    path = Path(folder) / "synthetic" / f"questions-{key}.csv"
    if path.exists():
        return load_questions(dataset, path), path
    writer = make_question_writer(config)
    built = generate_questions(dataset, chunks, writer, n=n, seed=seed, progress=progress)
    save_questions(built, path, writer=writer.name)
    return built, path
