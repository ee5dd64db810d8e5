"""Message Batches through the real SDK against the local Messages API server, with the real run store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from anthropic_server import tokens  # noqa: E402

from workbench.batches import (  # noqa: E402
    BatchError,
    BatchRequest,
    PollPolicy,
    answer_requests,
    answers_from,
    run_batch,
)
from workbench.config import GenerationConfig  # noqa: E402
from workbench.generation import AnthropicGenerator, anthropic_client  # noqa: E402
from workbench.store.ledger import BatchLedger  # noqa: E402
from workbench.prices import load_prices, price_of, usage_cost  # noqa: E402
from workbench.types import Chunk, Hit  # noqa: E402

PRICES = load_prices()
FAST = PollPolicy(base_s=0.01, cap_s=0.04, timeout_s=5.0)


def hit(n: int, text: str) -> Hit:
    return Hit(chunk=Chunk(id=f"doc:{n}", doc_id="doc", text=text, start=0, end=len(text)), score=1.0 / n, rank=n)


CONTEXT = [hit(1, "Mount Everest is 8,849 metres high."), hit(2, "Python was created by Guido van Rossum.")]
QUESTIONS = {"q1": "How high is Everest?", "q2": "Who created Python?", "q3": "Where is Everest?"}


def echo(body) -> str:
    """A deterministic reply that depends on the question: the same for sync and batch calls."""
    question = body["messages"][-1]["content"]
    return f"About '{question}': see [1] and [2]."


@pytest.fixture
def api(anthropic_api):
    anthropic_api.responder = echo
    return anthropic_api


def requests(server, config=None):
    config = config or GenerationConfig(kind="anthropic", base_url=server.url, prompt_caching=False)
    return config, answer_requests(config, [(q, text, CONTEXT) for q, text in QUESTIONS.items()])


def test_batch_answers_equal_sync_answers_at_half_the_price(api):
    config, reqs = requests(api)
    client = anthropic_client(base_url=api.url)
    run = run_batch(client, reqs, poll=FAST, sleep=lambda s: None)
    assert run.failed == [] and list(run.results) == list(QUESTIONS) and len(run.batch_ids) == 1
    answers = answers_from(run, {q: CONTEXT for q in QUESTIONS})
    sync = AnthropicGenerator(config)
    for q, text in QUESTIONS.items():
        direct = sync.generate(text, CONTEXT)
        assert answers[q].text == direct.text and answers[q].citations == direct.citations == ("doc:1", "doc:2")
        batch_usage = answers[q].usage
        assert batch_usage.input_tokens == direct.usage.input_tokens and batch_usage.counted
        price = price_of(config.model, PRICES)
        assert batch_usage.cost_usd == pytest.approx(usage_cost(batch_usage, price) * (1 - price.batch_discount))
        assert batch_usage.cost_usd == pytest.approx(0.5 * direct.usage.cost_usd)
    created = [r for r in api.requests if r.outcome == "batch-created"]
    assert len(created) == 1 and [r["custom_id"] for r in created[0].body["requests"]] == list(QUESTIONS)
    assert created[0].body["requests"][0]["params"]["messages"][-1]["content"] == QUESTIONS["q1"]


def test_partial_failures_are_reported_and_retried_in_a_new_batch(api):
    _, reqs = requests(api)
    client = anthropic_client(base_url=api.url)
    api.fail_in_batch(q2="errored", q3="expired")
    once = run_batch(client, reqs, poll=FAST, retry_rounds=0, sleep=lambda s: None)
    assert once.failed == ["q2", "q3"]
    assert once.results["q2"].status == "errored" and "overloaded_error" in once.results["q2"].error
    assert once.results["q3"].status == "expired" and once.results["q3"].usage is None
    assert once.cost_usd == pytest.approx(once.results["q1"].usage.cost_usd)  # failed requests are not billed
    api.fail_in_batch(q1="canceled", q3="expired")
    retried = run_batch(client, reqs, poll=FAST, retry_rounds=1, sleep=lambda s: None)
    assert retried.failed == [] and len(retried.batch_ids) == 2
    second = api.batches[retried.batch_ids[1]]
    assert [r["custom_id"] for r in second["requests"]] == ["q1", "q3"]  # only the failed ones again


def test_a_restart_while_the_batch_is_in_flight_resumes_it(api, tmp_path):
    _, reqs = requests(api)
    client = anthropic_client(base_url=api.url)
    ledger = BatchLedger(tmp_path / "runs.sqlite")
    api.batch_polls = 1000  # never ends within the first run's patience
    clock = iter(range(0, 10_000, 1)).__next__
    with pytest.raises(BatchError, match="still in_progress") as failed:
        run_batch(client, reqs, key="answers:abc", ledger=ledger, poll=PollPolicy(base_s=1, cap_s=2, timeout_s=5),
                  sleep=lambda s: None, clock=clock)
    assert failed.value.batch_id == ledger.recall("answers:abc") is not None
    ledger.close()
    api.batch_polls = 1
    again = BatchLedger(tmp_path / "runs.sqlite")  # a new process: only the store remembers
    run = run_batch(client, reqs, key="answers:abc", ledger=again, poll=FAST, sleep=lambda s: None)
    assert run.resumed and run.batch_ids == (failed.value.batch_id,) and run.failed == []
    assert len(api.batches) == 1  # nothing was paid twice
    assert again.recall("answers:abc") is None  # read: the next run of this key makes a new batch
    fresh = run_batch(client, reqs, key="answers:abc", ledger=again, poll=FAST, sleep=lambda s: None)
    assert not fresh.resumed and len(api.batches) == 2


def test_polling_backs_off_exponentially_to_the_cap(api):
    _, reqs = requests(api)
    api.batch_polls = 6
    sleeps: list[float] = []
    run = run_batch(anthropic_client(base_url=api.url), reqs, poll=PollPolicy(base_s=1, cap_s=4, timeout_s=100),
                    sleep=sleeps.append)
    assert sleeps == [1, 2, 4, 4, 4] and run.polls == 6


def test_bad_requests_are_refused_before_anything_is_sent(api, tmp_path):
    config, reqs = requests(api)
    client = anthropic_client(base_url=api.url)
    with pytest.raises(ValueError, match="repeat"):
        run_batch(client, [reqs[0], reqs[0]])
    with pytest.raises(ValueError, match="must be 1-64 letters"):
        run_batch(client, [BatchRequest(custom_id="has space", model=config.model, prompt=reqs[0].prompt,
                                        max_tokens=10)])
    with pytest.raises(ValueError, match="needs at least one request"):
        run_batch(client, [])
    with pytest.raises(ValueError, match="needs a key"):
        run_batch(client, reqs, ledger=BatchLedger(tmp_path / "runs.sqlite"))
    with pytest.raises(Exception, match="claude-nonexistent"):
        run_batch(client, [BatchRequest(custom_id="x", model="claude-nonexistent", prompt=reqs[0].prompt,
                                        max_tokens=10)])
    with pytest.raises(ValueError, match="base_s=0"):
        PollPolicy(base_s=0)
    assert api.requests == []


def test_batch_requests_carry_the_generators_prompt_and_cache_mark(api):
    config = GenerationConfig(kind="anthropic", base_url=api.url, cache_ttl="1h")
    (req,) = answer_requests(config, [("q1", "How high is Everest?", CONTEXT)])
    params = req.params()
    assert params["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert params["max_tokens"] == config.max_tokens and params["model"] == config.model
    run = run_batch(anthropic_client(base_url=api.url), [req], poll=FAST, sleep=lambda s: None, cache_ttl="1h")
    usage = run.results["q1"].usage
    assert usage.cache_write_tokens == tokens(params["system"][0]["text"])  # the server cached the marked prefix


def test_judge_calls_go_through_a_batch_at_half_the_price(api):
    from workbench.generation import LLMJudge

    api.responder = lambda body: '{"faithfulness": 4, "relevance": 5}'
    judge = LLMJudge(GenerationConfig(kind="anthropic", base_url=api.url, prompt_caching=False))
    items = {"a": ("How high is Everest?", "8,849 m [1]", CONTEXT), "b": ("Who made Python?", "Guido [2]", CONTEXT)}
    graded, run = judge.judge_batch(items, poll=FAST)
    assert set(graded) == {"a", "b"} and run.failed == []
    sync = judge.judge(*items["a"])
    assert (graded["a"].faithfulness, graded["a"].relevance) == (sync.faithfulness, sync.relevance) == (0.75, 1.0)
    assert graded["a"].usage.cost_usd == pytest.approx(0.5 * sync.usage.cost_usd)
    sent = next(r for r in api.requests if r.outcome == "batch-created").body["requests"][0]["params"]
    assert "Answer to grade:\n8,849 m [1]" in sent["messages"][-1]["content"] and sent["max_tokens"] == 64


def test_synthetic_questions_can_be_written_in_one_batch(api):
    from workbench.datasets import Dataset
    from workbench.synthetic import AnthropicQuestionWriter, generate_questions
    from workbench.types import Document

    def ask(body) -> str:  # a question built from the passage's own words, so it is grounded
        words = body["messages"][-1]["content"].split()
        return f"What does the passage say about {words[3]} and {words[5]}?"

    api.responder = ask
    text = " ".join(f"Sentence {i} tells how the wing number {i} bends under heavy load in flight." for i in range(40))
    dataset = Dataset(name="wings", documents=(Document(id="w", text=text),), queries={})
    from workbench.chunking import make_chunker
    from workbench.config import ChunkingConfig

    chunks = make_chunker(ChunkingConfig(method="fixed", size=40, tokenizer="whitespace")).chunk(dataset.documents[0])
    writer = AnthropicQuestionWriter(GenerationConfig(kind="anthropic", base_url=api.url))
    api.fail_in_batch(p1="errored")  # retried once in a second batch of its own
    batched = generate_questions(dataset, chunks, writer, n=3, seed=0, batch=True)
    created = [r.body["requests"] for r in api.requests if r.outcome == "batch-created"]
    assert [len(c) for c in created] == [min(6, len(chunks)), 1] and created[1][0]["custom_id"] == "p1"
    assert not [r for r in api.requests if r.outcome == "ok"]  # no synchronous call
    assert len(batched.queries) == 3 and all(q.startswith("What does the passage say") for q in batched.queries.values())
    with pytest.raises(ValueError, match="cannot write through the Batch API"):
        class Plain:
            name = "plain"

            def write(self, passage: str) -> str:
                return "Why?"

        generate_questions(dataset, chunks, Plain(), n=1, batch=True)
