"""The response cache on real SQLite files, with the real MiniLM embedder for semantic hits."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from workbench.response_cache import ResponseCache, normalize_query, threshold_sweep
from workbench.types import Answer, Usage


def answer(text: str, cost: float = 0.002) -> Answer:
    usage = Usage(model="claude-haiku-4-5", input_tokens=100, output_tokens=20, cost_usd=cost, counted=True,
                  latency_s=1.5, time_to_first_token_s=0.4)
    return Answer(text=text, citations=("doc:1",), usage=usage)


def test_exact_hits_survive_reopening_and_scopes_stay_apart(tmp_path):
    path = tmp_path / "responses.sqlite"
    with ResponseCache(path, scope="config-a") as cache:
        assert cache.get("How high is Everest?") is None
        cache.put("How high is Everest?", answer("8,849 m [1]"))
        hit = cache.get("  how HIGH is   everest? ")
        assert hit is not None and hit.kind == "exact" and hit.similarity == 1.0
        assert hit.answer == answer("8,849 m [1]")  # text, citations and usage round-trip
        assert hit.matched_query == "How high is Everest?"
        assert cache.get("How high is K2?") is None
        assert cache.stats.lookups == 3 and cache.stats.exact_hits == 1 and cache.stats.hit_rate == pytest.approx(1 / 3)
    with ResponseCache(path, scope="config-a") as again:
        assert again.get("How high is Everest?").answer.text == "8,849 m [1]"
        again.put("How high is Everest?", answer("8,848.86 m [1]"))  # replaces, atomically
        assert again.get("How high is Everest?").answer.text == "8,848.86 m [1]" and len(again) == 1
    with ResponseCache(path, scope="config-b") as other:
        assert other.get("How high is Everest?") is None and len(other) == 0
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert rows == 1


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path):
    path = tmp_path / "responses.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with ResponseCache(path) as cache:
        cache.put("q", answer("a"))
        assert cache.get("q") is not None
    assert len(list(tmp_path.glob("responses.sqlite.corrupt-*"))) == 1


def test_semantic_needs_an_embedder_and_a_sane_threshold(tmp_path):
    with pytest.raises(ValueError, match="needs an embedder"):
        ResponseCache(tmp_path / "c.sqlite", threshold=0.9)
    with pytest.raises(ValueError, match=r"threshold=1.5"):
        ResponseCache(tmp_path / "c.sqlite", threshold=1.5, embedder=object())  # type: ignore[arg-type]


@pytest.mark.slow  # loads MiniLM when run alone
def test_semantic_hits_paraphrases_and_logs_what_it_served(tmp_path, embedder):
    with ResponseCache(tmp_path / "c.sqlite", embedder=embedder, threshold=0.8) as cache:
        cache.put("What is the height of Mount Everest?", answer("8,849 m [1]"))
        cache.put("Who created the Python programming language?", answer("Guido van Rossum [1]"))
        hit = cache.get("How tall is Mount Everest?")
        assert hit is not None and hit.kind == "semantic" and 0.8 <= hit.similarity < 1.0
        assert hit.answer.text == "8,849 m [1]"
        assert cache.get("What is the capital of France?") is None
        served = cache.served
        assert [(s.query, s.matched_query, s.kind) for s in served] == [
            ("How tall is Mount Everest?", "What is the height of Mount Everest?", "semantic")
        ]
        assert cache.stats.semantic_hits == 1 and cache.stats.lookups == 2
    # a looser threshold serves the wrong answer: exactly what the served log is for
    with ResponseCache(tmp_path / "c.sqlite", embedder=embedder, threshold=0.1) as loose:
        wrong = loose.get("Who wrote the Linux kernel?")
        assert wrong is not None and wrong.matched_query == "Who created the Python programming language?"


def test_threshold_sweep_counts_hits_and_wrong_answers_by_hand():
    # 2-d vectors with hand-checkable cosines: q1 and q2 agree (cos 0.8), q3 is near q2 (cos 0.96)
    # but asks something else, q4 repeats q1 exactly.
    vectors = {"q1": [1.0, 0.0], "q2": [0.8, 0.6], "q3": [0.6, 0.8], "Q1 ": [1.0, 0.0]}
    sweep = threshold_sweep(
        ["q1", "q2", "q3", "Q1 "], ["a", "a", "b", "a"], [0.5, 0.9, 0.99],
        embed=lambda texts: np.array([vectors[t] for t in texts]),
    )
    # t=0.5: q2 hits q1 (right), q3 hits q2 (wrong), q4 exact (right)
    # t=0.9: q3 hits q2 (wrong), q4 exact; t=0.99: only the exact repeat
    assert sweep.hit_rate == (0.75, 0.5, 0.25)
    assert sweep.wrong_rate == (0.25, 0.25, 0.0)
    assert sweep.precision == pytest.approx((2 / 3, 0.5, 1.0))
    assert list(sweep.to_frame().columns) == ["threshold", "hit_rate", "wrong_rate", "precision"]
    assert normalize_query("Q1 ") == "q1"
    with pytest.raises(ValueError, match="one label per question"):
        threshold_sweep(["a"], [], [0.5], embed=lambda t: np.ones((len(t), 2)))


def test_threshold_sweep_with_the_real_embedder(embedder):
    queries = ["What is the height of Mount Everest?", "How tall is Mount Everest?",
               "Who created Python?", "Who created Linux?"]
    sweep = threshold_sweep(queries, ["everest", "everest", "python", "linux"], [0.3, 0.8, 0.99],
                            embed=embedder.embed)
    assert sweep.hit_rate[0] >= sweep.hit_rate[1] >= sweep.hit_rate[2] == 0.0
    assert sweep.wrong_rate[1] == 0.0 and sweep.hit_rate[1] == 0.25  # only the paraphrase hits at 0.8
