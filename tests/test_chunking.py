"""Tests of workbench.chunking: properties on arbitrary text, the bundled corpora, bad input."""

from __future__ import annotations

import dataclasses
from bisect import bisect_left
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.chunking import (
    CHUNKERS,
    FixedTokenChunker,
    RecursiveChunker,
    SemanticChunker,
    TokenIndex,
    make_chunker,
    make_tokenize,
)
from workbench.config import ChunkingConfig, ConfigError
from workbench.io import DATA_DIR
from workbench.types import Document

CORPORA = sorted((DATA_DIR / "chunking" / "corpora").glob("*.md"))
PROPERTY_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def words(text: str) -> int:
    """Whitespace tokens, counted independently of the chunker's own tokenizer."""
    return len(text.split())


def letter_embed(texts):
    """A cheap deterministic embedding for property tests: letter counts by code point mod 8."""
    out = np.ones((len(texts), 9))
    for row, text in zip(out, texts):
        for ch in text:
            row[ord(ch) % 8] += 1.0
    return out


def chunker(method: str, size: int, overlap: int = 0, tokenizer: str = "whitespace"):
    config = ChunkingConfig(method=method, size=size, overlap=overlap, tokenizer=tokenizer)
    return make_chunker(config, embed=letter_embed)


def check_invariants(doc: Document, chunks) -> None:
    """Offsets exact, chunks stripped and non-empty, ids unique and stable, metadata complete."""
    assert chunks, "a non-blank document yields at least one chunk"
    for i, c in enumerate(chunks):
        assert doc.text[c.start : c.end] == c.text
        assert c.text and c.text == c.text.strip()
        assert c.doc_id == doc.id
        assert c.id == f"{doc.id}:{c.start}-{c.end}"
        assert c.metadata["chunk_index"] == i
        assert isinstance(c.metadata["headings"], list)
        for key, value in doc.metadata.items():
            assert c.metadata[key] == value
    assert len({c.id for c in chunks}) == len(chunks)


def check_coverage(doc: Document, chunks) -> None:
    covered = bytearray(len(doc.text))
    for c in chunks:
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    missing = [i for i, ch in enumerate(doc.text) if not ch.isspace() and not covered[i]]
    assert not missing, f"characters not in any chunk at {missing[:10]}"


# Arbitrary unicode, plus text rich in whitespace runs and text without any spaces at all.
TEXTS = st.one_of(
    st.text(min_size=1, max_size=600),
    st.text(alphabet=st.sampled_from(list("ab .!?\n\t#=\u00a0\u3000\u0301é戦")), min_size=1, max_size=800),
    st.text(alphabet="xyz", min_size=1, max_size=400),
    st.lists(st.sampled_from(["# T\n", "## U\n", "word ", "end. ", "\n\n", "   ", "\n", "=  = h = =\n"]),
             min_size=1, max_size=120).map("".join),
).filter(lambda t: t.strip())


@PROPERTY_SETTINGS
@given(text=TEXTS, method=st.sampled_from(["none", "fixed", "recursive", "semantic"]),
       size=st.integers(1, 40), data=st.data())
def test_properties_on_arbitrary_text(text, method, size, data):
    overlap = data.draw(st.integers(0, size - 1)) if method != "none" else 0
    doc = Document(id="d", text=text, metadata={"source": "x.md"})
    chunks = chunker(method, size, overlap).chunk(doc)
    check_invariants(doc, chunks)
    check_coverage(doc, chunks)
    if method == "none":
        assert len(chunks) == 1 and chunks[0].text == text.strip()
        return
    assert all(words(c.text) <= size for c in chunks)
    if method == "recursive":  # any overlap between neighbours is at most `overlap` tokens
        for a, b in zip(chunks, chunks[1:]):
            assert words(doc.text[b.start : a.end]) <= overlap if b.start < a.end else True
    assert chunker(method, size, overlap).chunk(doc) == chunks  # stable


@PROPERTY_SETTINGS
@given(text=TEXTS, size=st.integers(1, 30), data=st.data())
def test_fixed_windows_are_full_and_share_exactly_overlap_tokens(text, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    doc = Document(id="d", text=text)
    chunks = chunker("fixed", size, overlap).chunk(doc)
    tokens = [m.span() for m in re.finditer(r"\S+", text)]
    assert sum(words(c.text) for c in chunks) - overlap * (len(chunks) - 1) == len(tokens)
    for a, b in zip(chunks, chunks[1:]):
        assert words(a.text) == size  # only the last window may be short
        assert words(doc.text[b.start : a.end]) == overlap if overlap else b.start >= a.end
        assert a.start < b.start  # windows advance


@settings(max_examples=40, deadline=None)
@given(text=TEXTS, method=st.sampled_from(["fixed", "recursive"]), size=st.integers(1, 24),
       tokenizer=st.sampled_from(["embedding", "claude"]))
def test_subword_tokenizers_keep_offsets_and_coverage(text, method, size, tokenizer):
    # Subword tokenizers drop some characters (BERT drops control characters and lone accents)
    # and byte-level BPE tokens straddle whitespace; every character must still land in a chunk.
    doc = Document(id="d", text=text)
    chunks = chunker(method, size, size // 3, tokenizer=tokenizer).chunk(doc)
    check_invariants(doc, chunks)
    check_coverage(doc, chunks)


def test_token_index_counts_spans_by_offsets():
    index = TokenIndex.from_offsets([(0, 3), (3, 5), (6, 9), (6, 9), (10, 12)])
    assert index.count(0, 12) == 5
    assert index.count(0, 3) == 1
    assert index.count(4, 6) == 1  # a token cut by the boundary counts
    assert index.count(5, 6) == 0
    assert index.count(6, 9) == 2
    weighted = TokenIndex.from_offsets([(0, 2), (3, 8)], [1, 4])
    assert weighted.count(0, 8) == 5 and weighted.count(3, 8) == 4


def test_injected_count_tokens_bounds_each_chunk():
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu " * 5
    doc = Document(id="g", text=text)
    for method in ("fixed", "recursive"):
        chunks = make_chunker(ChunkingConfig(method=method, size=20, overlap=5), count_tokens=len).chunk(doc)
        check_invariants(doc, chunks)
        check_coverage(doc, chunks)
        assert all(sum(map(len, c.text.split())) <= 20 for c in chunks)
        assert len(chunks) > 10


@pytest.mark.parametrize("method", ["fixed", "recursive"])
@pytest.mark.parametrize("size", [128, 256])
def test_bundled_corpora_with_the_embedding_tokenizer(method, size):
    from transformers import AutoTokenizer

    from workbench.embedding import resolve_model

    hf = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    chunk = chunker(method, size, size // 8, tokenizer="embedding").chunk
    for path in CORPORA:
        doc = Document(id=path.stem, text=path.read_text(encoding="utf-8"))
        chunks = chunk(doc)
        check_invariants(doc, chunks)
        check_coverage(doc, chunks)
        if method == "recursive":  # cuts fall between words, so each chunk re-tokenizes alone
            counts = [len(ids) for ids in hf([c.text for c in chunks], add_special_tokens=False)["input_ids"]]
            assert max(counts) <= size
        else:  # windows may start inside a word: count the document's own tokens in each window
            offsets = hf(doc.text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            starts = [s for s, e in offsets["offset_mapping"] if e > s]
            counts = [bisect_left(starts, c.end) - bisect_left(starts, c.start) for c in chunks]
            assert counts[:-1] == [size] * (len(chunks) - 1)
            assert 0 < counts[-1] <= size


def test_claude_tokenizer_chunks_state_of_the_union():
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(str(DATA_DIR / "claude_tokenizer" / "tokenizer.json"))
    doc = Document(id="sotu", text=(DATA_DIR / "chunking" / "corpora" / "state_of_the_union.md").read_text())
    chunks = chunker("recursive", 200, tokenizer="claude").chunk(doc)
    check_invariants(doc, chunks)
    check_coverage(doc, chunks)
    counts = [len(tok.encode(c.text, add_special_tokens=False).ids) for c in chunks]
    assert max(counts) <= 200
    # ~11.5k Claude tokens in 200-token chunks: the merging keeps chunks reasonably full
    assert 58 <= len(chunks) <= 90


MARKDOWN = """# Guide

Intro paragraph about the guide.

## Install

Run the installer. Then restart.

```bash
# not a heading, a shell comment
make run
```

### Linux

Use the package manager on Linux systems.

## Usage

Call the command with a file.

# Appendix

Extra notes live here.
"""


def test_heading_metadata_on_markdown():
    doc = Document(id="guide.md", text=MARKDOWN, metadata={"title": "Guide"})
    chunks = chunker("recursive", 12).chunk(doc)
    check_invariants(doc, chunks)
    check_coverage(doc, chunks)
    by_text = {c.text.split("\n")[0]: c.metadata["headings"] for c in chunks}
    assert by_text["# Guide"] == ["Guide"]
    assert by_text["## Install"] == ["Guide", "Install"]
    assert by_text["### Linux"] == ["Guide", "Install", "Linux"]
    assert by_text["## Usage"] == ["Guide", "Usage"]
    assert by_text["# Appendix"] == ["Appendix"]
    # headings split chunks: no chunk spans two sections, and the fenced comment is not a heading
    assert not any("## Usage" in c.text and "Linux" in c.text for c in chunks)
    code = next(c for c in chunks if "make run" in c.text)
    assert code.metadata["headings"] == ["Guide", "Install"]
    assert all(c.metadata["title"] == "Guide" for c in chunks)
    plain = chunker("recursive", 12).chunk(Document(id="p", text="no headings here at all"))
    assert plain[0].metadata["headings"] == []


def test_long_runs_without_spaces_split_at_subword_tokens():
    doc = Document(id="z", text="abcdefghij" * 9)  # one 90-character word, many WordPiece tokens
    for method in ("fixed", "recursive"):
        chunks = chunker(method, 8, tokenizer="embedding").chunk(doc)
        check_invariants(doc, chunks)
        assert "".join(c.text for c in chunks) == doc.text
        assert len(chunks) > 1
    # WordPiece reads a word over 100 characters as one [UNK] token: the one allowed oversize chunk
    long = Document(id="u", text="x" * 5000)
    assert [c.text for c in chunker("fixed", 8, tokenizer="embedding").chunk(long)] == [long.text]


@pytest.mark.slow
def test_semantic_chunker_splits_at_a_topic_change(embedder):
    cooking = [
        "Boil the pasta in plenty of salted water.",
        "Stir the spaghetti so the noodles do not stick together.",
        "Drain the pasta and toss it with the tomato sauce.",
        "Grate parmesan cheese over the plate of spaghetti before serving.",
    ]
    volcano = [
        "The volcano erupted and sent ash high into the stratosphere.",
        "Lava flows from the crater destroyed the nearby villages.",
        "Geologists measured the seismic tremors beneath the volcanic mountain.",
        "Magma pressure inside the volcano had been rising for months.",
    ]
    text = " ".join(cooking) + " " + " ".join(volcano)
    doc = Document(id="topics", text=text)
    semantic = make_chunker(ChunkingConfig(method="semantic", size=512), embed=embedder.embed)
    chunks = semantic.chunk(doc)
    check_invariants(doc, chunks)
    check_coverage(doc, chunks)
    assert [c.text for c in chunks] == [" ".join(cooking), " ".join(volcano)]
    # A window of two sentences per side finds the same boundary.
    windowed = dataclasses.replace(semantic, window=2).chunk(doc)
    assert [c.start for c in windowed] == [c.start for c in chunks]
    # Groups over `size` tokens are split further by the recursive chunker.
    small = make_chunker(ChunkingConfig(method="semantic", size=20), embed=embedder.embed).chunk(doc)
    assert len(small) > 2 and all(words(c.text) <= 20 for c in small)


@pytest.mark.parametrize("method", sorted(CHUNKERS))
@pytest.mark.parametrize("text", ["", "   \n\t  "])
def test_blank_document_is_rejected_naming_it(method, text):
    with pytest.raises(ValueError, match="'empty-doc'.*empty or whitespace-only"):
        chunker(method, 16).chunk(Document(id="empty-doc", text=text))


def test_unknown_method_lists_every_chunker():
    with pytest.raises(ConfigError, match=r"\['fixed', 'none', 'recursive', 'semantic'\]"):
        ChunkingConfig(method="sentences")
    config = ChunkingConfig()
    object.__setattr__(config, "method", "sentences")  # bypass the config's own check
    with pytest.raises(ValueError, match=r"'sentences'.*\['fixed', 'none', 'recursive', 'semantic'\]"):
        make_chunker(config)


def test_other_bad_settings_name_the_value():
    with pytest.raises(ConfigError, match="overlap=64 must be >= 0 and < chunking.size=64"):
        ChunkingConfig(size=64, overlap=64)
    with pytest.raises(ValueError, match=r"'bpe'.*\['claude', 'embedding', 'whitespace'\]"):
        make_tokenize("bpe")
    with pytest.raises(ValueError, match="window=0"):
        SemanticChunker(size=10, window=0, tokenize=make_tokenize("whitespace"), embed=letter_embed)


def test_chunkers_are_usable_directly():
    tokenize = make_tokenize("whitespace")
    doc = Document(id="p", text="one two three four five six seven")
    fixed = FixedTokenChunker(size=3, overlap=1, tokenize=tokenize).chunk(doc)
    assert [c.text for c in fixed] == ["one two three", "three four five", "five six seven"]
    recursive = RecursiveChunker(size=3, tokenize=tokenize).chunk(doc)
    assert [c.text for c in recursive] == ["one two three", "four five six", "seven"]


def test_chunkers_are_built_like_every_stage_from_config_and_resources():
    from workbench.registry import REGISTRIES
    from workbench.resources import Resources

    assert CHUNKERS is REGISTRIES["chunking.method"] and CHUNKERS["fixed"] is FixedTokenChunker
    doc = Document(id="d", text="one two three four five six seven eight nine ten eleven twelve")
    config = ChunkingConfig(method="fixed", size=4, overlap=1)
    direct = CHUNKERS["fixed"].from_config(config, Resources(count_tokens=lambda word: 1))
    spans = [(c.start, c.end) for c in direct.chunk(doc)]
    assert spans == [(c.start, c.end) for c in make_chunker(config, count_tokens=lambda word: 1).chunk(doc)]
    assert [doc.text[s:e].split()[0] for s, e in spans] == ["one", "four", "seven", "ten"]
    with pytest.raises(ValueError, match=r"unknown chunking tokenizer 'bpe'; choose one of \['claude', 'embedding', 'whitespace'\]"):
        make_tokenize("bpe")
