"""Conversations: history sent each turn, fitted to the budget, priced with and without caching its prefix.

Claude turns go through the real SDK to the local Messages server, whose prompt cache follows
the request's `cache_control` marks; offline turns use the extractive generator.
"""

from __future__ import annotations

import pytest

from workbench.budget import SUMMARY_PREFIX, BudgetError
from workbench.config import PipelineConfig, replace_path
from workbench.conversation import SUMMARY_QUESTION, Conversation, answered_by
from workbench.datasets import Dataset
from workbench.experiment import build_pipeline
from workbench.types import Document

DOCS = (
    Document(id="everest", text="Mount Everest is 8,849 metres high. It lies on the border of Nepal and China."),
    Document(id="k2", text="K2 is 8,611 metres high. It is the second highest mountain on Earth."),
)
DATASET = Dataset(name="chat", documents=DOCS, queries={"q": "How high is Everest?"})
QUESTIONS = ["How high is Everest?", "And K2?", "Which one is higher?", "Where is Everest?"]


def words(text: str) -> int:
    return len(text.split())


def reply(body) -> str:
    last = body["messages"][-1]["content"]
    question = last.rsplit("Question: ", 1)[-1] if isinstance(last, str) else "?"
    return f"You asked: {question} See [1]."


@pytest.fixture
def api(anthropic_api):
    anthropic_api.responder = reply
    return anthropic_api


def config(**changes) -> PipelineConfig:
    cfg = PipelineConfig(name="chat")
    for path, value in {"retrieval.kind": "bm25", "retrieval.k": 2, "chunking.method": "none",
                        "generation.context_chunks": 2, **changes}.items():
        cfg = replace_path(cfg, path, value)
    return cfg


def claude(server, **changes) -> PipelineConfig:
    return config(**{"generation.kind": "anthropic", "generation.base_url": server.url, **changes})


def test_history_is_sent_each_turn_and_its_cached_prefix_is_measured(api):
    chat = Conversation(build_pipeline(claude(api), DATASET), count=words)
    turns = [chat.ask(q) for q in QUESTIONS]
    sent = [r.body for r in api.requests if r.outcome == "ok"]
    assert [len(b["messages"]) for b in sent] == [1, 3, 5, 7]  # every earlier turn, then the question
    third = sent[2]["messages"]
    assert [m["content"] for m in third[:2]] == [QUESTIONS[0], turns[0].response.answer.text]
    assert third[3]["content"][0]["cache_control"]["type"] == "ephemeral"  # the last history turn is marked
    assert third[-1]["content"].endswith("Question: " + QUESTIONS[2])
    for turn, recorded in zip(turns, [r for r in api.requests if r.outcome == "ok"], strict=True):
        cost = turn.cost
        assert cost.counted and cost.cached_prefix_tokens == recorded.usage["cache_read_input_tokens"]
        assert cost.input_tokens == sum(recorded.usage[k] for k in (
            "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    assert turns[0].cost.cached_prefix_tokens == 0
    assert answered_by(chat.pipeline.config, turns[0].response) == "answered by Claude `claude-haiku-4-5`"
    # from turn 3 on the turns before the newest one are read from the cache: cheaper than resending them
    assert turns[2].cost.cached_prefix_tokens > turns[1].cost.cached_prefix_tokens > 0
    assert turns[3].cost.with_caching_usd < turns[3].cost.without_caching_usd
    assert turns[3].cost.saving_usd > turns[2].cost.saving_usd


def test_history_beyond_the_budget_is_truncated(api):
    chat = Conversation(build_pipeline(claude(api, **{"budget.history_tokens": 30}), DATASET), count=words)
    for q in QUESTIONS:
        turn = chat.ask(q)
        assert turn.history.tokens <= 30
    assert turn.history.dropped_turns >= 1 and turn.history.summary is None
    last = [r.body for r in api.requests if r.outcome == "ok"][-1]["messages"]
    assert len(last) == 2 * len(turn.history.turns) + 1
    assert QUESTIONS[0] not in [m["content"] for m in last if isinstance(m["content"], str)]


def test_history_beyond_the_budget_is_summarised_by_the_generator(api):
    cfg = claude(api, **{"budget.history_tokens": 25, "budget.history_overflow": "summarise"})
    chat = Conversation(build_pipeline(cfg, DATASET), count=words)
    for q in [*QUESTIONS, "Is K2 in China?", "Which is harder to climb?"]:
        turn = chat.ask(q)
    summaries = [r.body for r in api.requests if r.outcome == "ok"
                 and r.body["messages"][-1]["content"].endswith(SUMMARY_QUESTION)]
    assert len(summaries) >= 2, "the configured generator was asked for a summary as history overflowed"
    # incremental: a later summary is written from the earlier one and the turns dropped since
    assert "Earlier summary: " in summaries[-1]["system"][1]["text"]
    assert QUESTIONS[0] not in summaries[-1]["system"][1]["text"]
    assert turn.history.summary is not None and turn.history.summary.startswith(SUMMARY_PREFIX)
    assert turn.history.tokens <= 25
    # the summary call is paid for in the turn that made it, at its counted usage
    from workbench.prices import price_of, usage_cost
    from workbench.types import Usage

    ok = [r for r in api.requests if r.outcome == "ok"]
    assert ok[-2].body["messages"][-1]["content"] == SUMMARY_QUESTION  # the summary, then the answer
    u = ok[-2].usage
    paid = usage_cost(Usage(model="claude-haiku-4-5", input_tokens=u["input_tokens"], output_tokens=u["output_tokens"],
                            cache_write_tokens=u["cache_creation_input_tokens"],
                            cache_read_tokens=u["cache_read_input_tokens"]), price_of("claude-haiku-4-5"))
    assert turn.cost.counted and turn.cost.summary_usd == pytest.approx(paid) and paid > 0
    assert turn.cost.with_caching_usd > turn.cost.summary_usd
    last = [r.body for r in api.requests if r.outcome == "ok"][-1]["messages"]
    assert last[1]["content"] == turn.history.summary or last[1]["content"][0]["text"] == turn.history.summary


def test_offline_turns_are_estimated_and_labelled(api):
    cfg = config(**{"generation.kind": "extractive", "generation.extractive_scorer": "lexical"})
    chat = Conversation(build_pipeline(cfg, DATASET), count=words)
    turns = [chat.ask(q) for q in QUESTIONS]
    assert not any(t.cost.counted for t in turns) and api.requests == []
    said = answered_by(cfg, turns[0].response)
    assert said.startswith("answered by the offline extractive generator") and "no LLM" in said
    assert turns[0].cost.cached_prefix_tokens == 0
    assert turns[3].cost.cached_prefix_tokens > turns[2].cost.cached_prefix_tokens > turns[1].cost.cached_prefix_tokens
    assert turns[3].cost.with_caching_usd < turns[3].cost.without_caching_usd
    from workbench.generation import SYSTEM_PROMPT

    history = turns[3].history.turns
    assert len(history) == 3 and history[0] == (QUESTIONS[0], turns[0].response.answer.text)
    assert turns[3].cost.prefix_tokens == words(SYSTEM_PROMPT) + sum(words(q) + words(a) for q, a in history)
    # turn 4 reads what turn 3 cached: the instructions and turn 3's history (turns 1 and 2)
    assert turns[3].cost.cached_prefix_tokens == words(SYSTEM_PROMPT) + sum(words(q) + words(a) for q, a in history[:2])


def test_a_question_over_the_context_budget_is_refused(api):
    chat = Conversation(build_pipeline(config(**{"generation.kind": "extractive", "budget.context_tokens": 3,
                                                 "generation.extractive_scorer": "lexical"}), DATASET), count=words)
    with pytest.raises(BudgetError, match="more than budget.context_tokens=3"):
        chat.ask("How high is Mount Everest really?")
    assert chat.turns == []
