"""Token budgets: passages and history fitted when the prompt is assembled, counted by hand (words)."""

from __future__ import annotations

import pytest

from workbench.budget import SUMMARY_PREFIX, BudgetError, fit_context, fit_history
from workbench.config import BudgetConfig, ConfigError, PipelineConfig, config_hash, replace_path
from workbench.datasets import Dataset
from workbench.experiment import build_pipeline
from workbench.generation.base import passage_block, passages_text
from workbench.types import Chunk, Document, Hit


def words(text: str) -> int:
    return len(text.split())


def hit(n: int, n_words: int) -> Hit:
    text = " ".join(f"w{n}" for _ in range(n_words))
    return Hit(chunk=Chunk(id=f"c{n}", doc_id="d", text=text, start=0, end=len(text)), score=1 / n, rank=n)


CONTEXT = [hit(1, 10), hit(2, 10), hit(3, 10), hit(4, 10)]
QUESTION = "how many words fit here"  # 5 words; the header 2 words, each passage block 10 + 3


def test_lowest_ranked_passages_are_dropped_first_and_reported():
    assert words(passage_block(1, CONTEXT[0].chunk.text)) == 13
    fitted = fit_context(QUESTION, CONTEXT, BudgetConfig(context_tokens=5 + 2 * 13 + 12), count=words)
    assert [h.chunk.id for h in fitted.context] == ["c1", "c2"]
    assert fitted.dropped == ("c4", "c3")  # the lowest-ranked first
    assert fitted.question_tokens == 5 and fitted.context_tokens == 2 + 26
    assert fitted.question_tokens + fitted.context_tokens <= fitted.budget
    exact = fit_context(QUESTION, CONTEXT, BudgetConfig(context_tokens=5 + 2 + 3 * 13), count=words)
    assert len(exact.context) == 3 and exact.dropped == ("c4",)
    unlimited = fit_context(QUESTION, CONTEXT, BudgetConfig(), count=words)
    assert len(unlimited.context) == 4 and unlimited.dropped == ()
    # room for the question and the "none retrieved" line only
    only_question = fit_context(QUESTION, CONTEXT, BudgetConfig(context_tokens=5 + 6), count=words)
    assert only_question.context == () and only_question.dropped == ("c4", "c3", "c2", "c1")
    with pytest.raises(BudgetError, match="passages header"):
        fit_context(QUESTION, CONTEXT, BudgetConfig(context_tokens=5), count=words)


def test_a_budget_smaller_than_the_question_is_a_clear_error():
    with pytest.raises(BudgetError, match=r"the question needs 5 tokens, more than budget.context_tokens=4"):
        fit_context(QUESTION, CONTEXT, BudgetConfig(context_tokens=4), count=words)


def test_a_passage_that_does_not_fit_drops_every_passage_below_it():
    context = [hit(1, 10), hit(2, 40), hit(3, 2)]
    fitted = fit_context(QUESTION, context, BudgetConfig(context_tokens=30), count=words)
    assert [h.chunk.id for h in fitted.context] == ["c1"] and fitted.dropped == ("c3", "c2")


HISTORY = [(f"question {i} " + "q " * 3, f"answer {i} " + "a " * 3) for i in range(1, 6)]  # 10 words a turn


def test_history_keeps_the_latest_turns_and_truncates_the_rest():
    fitted = fit_history(HISTORY, BudgetConfig(history_tokens=25), count=words)
    assert fitted.turns == tuple(HISTORY[-2:]) and fitted.dropped_turns == 3 and fitted.summary is None
    assert fitted.tokens == 20 <= fitted.budget
    assert fit_history(HISTORY, BudgetConfig(), count=words).turns == tuple(HISTORY)


def test_history_beyond_the_budget_is_summarised_within_it():
    seen = []

    def summarise(turns):
        seen.append(list(turns))
        return "the user asked about " + ", ".join(t[0].split()[1] for t in turns)

    budget = BudgetConfig(history_tokens=44, history_overflow="summarise")  # 33 for turns, 11 for the summary
    fitted = fit_history(HISTORY, budget, summarise=summarise, count=words)
    assert seen == [HISTORY[:2]]  # the turns that did not fit, oldest first
    assert fitted.turns[1:] == tuple(HISTORY[2:]) and fitted.dropped_turns == 2
    assert fitted.summary == SUMMARY_PREFIX + "the user asked about 1, 2"
    assert fitted.turns[0] == ("(summary)", fitted.summary)
    assert fitted.tokens == sum(words(a) + words(b) for a, b in fitted.turns) == 42 <= 44


def test_a_history_over_budget_on_its_own_still_fits():
    huge = [("tell me " + "x " * 100, "sure " + "y " * 100)]
    fitted = fit_history(huge, BudgetConfig(history_tokens=12, history_overflow="summarise"),
                         summarise=lambda turns: "z " * 500, count=words)
    assert fitted.dropped_turns == 1 and fitted.tokens <= 12
    assert fitted.summary is not None and fitted.summary.startswith(SUMMARY_PREFIX)
    truncated = fit_history(huge, BudgetConfig(history_tokens=12), count=words)
    assert truncated.turns == () and truncated.tokens == 0
    with pytest.raises(ValueError, match="needs a summarise callable"):
        fit_history(huge, BudgetConfig(history_tokens=12, history_overflow="summarise"), count=words)


def test_budget_config_validates_and_enters_the_hash_only_when_set():
    with pytest.raises(ConfigError, match="budget.context_tokens=-1"):
        BudgetConfig(context_tokens=-1)
    with pytest.raises(ConfigError, match="unknown budget.history_overflow 'forget'"):
        BudgetConfig(history_overflow="forget")  # type: ignore[arg-type]
    plain = PipelineConfig()
    assert config_hash(replace_path(plain, "budget", BudgetConfig())) == config_hash(plain)
    assert config_hash(replace_path(plain, "budget.context_tokens", 500)) != config_hash(plain)


def test_the_pipeline_enforces_the_context_budget_and_reports_drops():
    docs = tuple(Document(id=f"d{i}", text=f"Everest fact {i}. " + "filler words here " * 30) for i in range(4))
    dataset = Dataset(name="budget", documents=docs, queries={"q": "Everest fact"})
    config = PipelineConfig(name="b")
    for path, value in {"retrieval.kind": "bm25", "retrieval.k": 4, "chunking.method": "none",
                        "generation.kind": "extractive", "generation.extractive_scorer": "lexical",
                        "generation.context_chunks": 4}.items():
        config = replace_path(config, path, value)
    free = build_pipeline(config, dataset).answer("Everest fact")
    assert free.dropped == ()
    from workbench.tokens import estimate_tokens

    one = estimate_tokens("Everest fact") + estimate_tokens(passages_text(free.hits[:1]))
    tight = build_pipeline(replace_path(config, "budget.context_tokens", one + 5), dataset).answer("Everest fact")
    assert tight.dropped == tuple(h.chunk.id for h in reversed(free.hits[1:4]))
    assert set(tight.answer.citations) <= {free.hits[0].chunk.id}
    with pytest.raises(BudgetError, match="the question needs"):
        build_pipeline(replace_path(config, "budget.context_tokens", 1), dataset).answer("Everest fact " * 5)
