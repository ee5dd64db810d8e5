"""The Message Batches path against the synchronous path on the local Messages server.

Both answer the same 40 Cranfield questions (BM25, top 5 passages, Claude Haiku 4.5 with the
instructions prompt-cached) through the real SDK: sync with one streamed `messages.stream`
call per question (`Pipeline.answer`), batch with one `messages.batches` job
(`Pipeline.answer_batch`: create, poll, results). The server's prompt cache is emptied before
each path, so both see the same cache writes and reads. It prints whether the answers are
identical, the cost ratio batch / sync (from each call's real usage; the price table's batch
discount is 50%) and each path's wall time. The local server answers at once: the wall times
measure the client side only (a real batch takes minutes to hours; that is its trade).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/batches.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from anthropic_server import AnthropicServer  # noqa: E402

from workbench.batches import PollPolicy  # noqa: E402
from workbench.config import PipelineConfig, replace_path  # noqa: E402
from workbench.datasets import load_dataset  # noqa: E402
from workbench.experiment import build_pipeline  # noqa: E402

N = 40
KEY = "sk-ant-bench-batches"


def reply(body) -> str:
    question = body["messages"][-1]["content"]
    return f"The passages answer '{question[:60]}' in [1], with more in [2]."


def main() -> None:
    os.environ["ANTHROPIC_API_KEY"] = KEY
    dataset = load_dataset("cranfield")
    queries = {q: dataset.queries[q] for q in dataset.evaluated_queries[:N]}
    with AnthropicServer(api_key=KEY, responder=reply) as server:
        config = PipelineConfig(name="batch-bench")
        for path, value in {"retrieval.kind": "bm25", "retrieval.k": 5, "generation.kind": "anthropic",
                            "generation.base_url": server.url, "generation.context_chunks": 5}.items():
            config = replace_path(config, path, value)
        pipeline = build_pipeline(config, dataset)
        pipeline.answer(queries[next(iter(queries))])  # warm the client and index (not timed)
        server.reset()
        t0 = time.perf_counter()
        sync = {q: pipeline.answer(text) for q, text in queries.items()}
        sync_s = time.perf_counter() - t0
        server.reset()
        t0 = time.perf_counter()
        batch, run = pipeline.answer_batch(queries, poll=PollPolicy(base_s=0.05, cap_s=0.5))
        batch_s = time.perf_counter() - t0
    same = all(batch[q].answer.text == sync[q].answer.text and batch[q].answer.citations == sync[q].answer.citations
               for q in queries)
    sync_cost = sum(r.answer.usage.cost_usd for r in sync.values())
    batch_cost = run.cost_usd
    print(f"{N} Cranfield questions, Claude Haiku 4.5 on the local Messages server")
    print(f"  answers identical (text and citations): {same}; failed in batch: {run.failed}")
    print(f"  cost: sync ${sync_cost:.6f}, batch ${batch_cost:.6f}, ratio {batch_cost / sync_cost:.3f}")
    print(f"  wall time: sync {sync_s:.2f} s ({1000 * sync_s / N:.1f} ms a question), batch {batch_s:.2f} s "
          f"({run.polls} retrieve(s), 1 create, 1 results read)")


if __name__ == "__main__":
    main()
