"""Token budgets over long contexts and long chats: tokens sent against the budget, overruns, and
what summarising history costs and keeps against truncating it.

Long contexts: every judged Cranfield question with its top 40 BM25 passages, fitted to each
context budget (question + passages); tokens are counted with the offline Claude estimate the
budget uses (`tokens.estimate_tokens`) on the prompt as sent. Long chats: 30 turns of
chunking-set questions (state_of_the_union) through the offline extractive generator, history
budget 600 tokens, with the history sent in full, truncated, or summarised (the summary written by
the same extractive generator); per turn the tokens sent, the estimated cost with the history
prefix cached (Claude Haiku 4.5 prices; offline estimates, labelled), and a retention proxy: the
share of earlier questions whose content words still appear in the history sent.

    WORKBENCH_CACHE_DIR=.cache/dev HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/budgets.py
"""

from __future__ import annotations

import statistics

from workbench.config import BudgetConfig, PipelineConfig, replace_path
from workbench.conversation import Conversation
from workbench.datasets import load_dataset
from workbench.experiment import build_pipeline
from workbench.generation.base import build_prompt
from workbench.tokens import estimate_tokens

CONTEXT_BUDGETS = (256, 512, 1024, 2048, 4096)
HISTORY_BUDGET = 600
TURNS = 30


def sent_tokens(question, context) -> int:
    prompt = build_prompt(question, context)  # the passages block is the system prompt's second part
    return estimate_tokens(question) + estimate_tokens(prompt.system[1]["text"])


def long_contexts() -> None:
    from workbench.budget import fit_context

    dataset = load_dataset("cranfield")
    config = replace_path(replace_path(PipelineConfig(), "retrieval.kind", "bm25"), "retrieval.k", 40)
    pipeline = build_pipeline(config, dataset)
    searched = [(dataset.queries[q], pipeline.search(dataset.queries[q])[0]) for q in dataset.evaluated_queries]
    print(f"long contexts: {len(searched)} Cranfield questions x top 40 passages "
          f"(unbudgeted: mean {statistics.mean(sent_tokens(q, h) for q, h in searched):.0f} tokens)")
    print(" budget  mean sent  max sent  overruns  mean kept  mean dropped")
    for budget in CONTEXT_BUDGETS:
        fitted = [fit_context(q, h, BudgetConfig(context_tokens=budget)) for q, h in searched]
        sent = [sent_tokens(q, f.context) for (q, _), f in zip(searched, fitted, strict=True)]
        overruns = sum(n > budget for n in sent)
        print(f" {budget:6d}  {statistics.mean(sent):9.0f}  {max(sent):8d}  {overruns:8d}  "
              f"{statistics.mean(len(f.context) for f in fitted):9.1f}  {statistics.mean(len(f.dropped) for f in fitted):12.1f}")
    print("  (sent: the question and the prompt's passages block as sent; an overrun is sent > budget)")


def retention(history, questions) -> float:
    text = " ".join(q + " " + a for q, a in history).lower()
    words = [[w for w in q.lower().split() if len(w) > 5] for q in questions]
    return statistics.mean(any(w in text for w in ws) for ws in words if ws) if questions else 1.0


def long_chats() -> None:
    dataset = load_dataset("chunking")
    questions = [dataset.queries[q] for q in dataset.evaluated_queries][:TURNS]
    base = PipelineConfig(name="chat")
    for path, value in {"retrieval.kind": "bm25", "retrieval.k": 3, "generation.context_chunks": 3,
                        "generation.kind": "extractive", "generation.extractive_scorer": "lexical"}.items():
        base = replace_path(base, path, value)
    modes = {"full history": BudgetConfig(),
             "truncated": BudgetConfig(history_tokens=HISTORY_BUDGET),
             "summarised": BudgetConfig(history_tokens=HISTORY_BUDGET, history_overflow="summarise")}
    print(f"\nlong chats: {TURNS} turns, history budget {HISTORY_BUDGET} tokens (offline estimates, Haiku 4.5 prices)")
    print(" history       mean history  max history  overruns  mean input  cost/turn cached  cost/turn uncached  "
          "retention (last 10 turns)")
    for name, budget in modes.items():
        chat = Conversation(build_pipeline(replace_path(base, "budget", budget), dataset))
        turns = [chat.ask(q) for q in questions]
        history = [t.history.tokens for t in turns]
        overruns = sum(h > budget.history_tokens for h in history) if budget.history_tokens else 0
        keep = statistics.mean(retention(t.history.turns, questions[:i]) for i, t in enumerate(turns) if i >= TURNS - 10)
        print(f" {name:12s}  {statistics.mean(history):12.0f}  {max(history):11d}  {overruns:8d}  "
              f"{statistics.mean(t.cost.input_tokens for t in turns):10.0f}  "
              f"${statistics.mean(t.cost.with_caching_usd for t in turns):15.6f}  "
              f"${statistics.mean(t.cost.without_caching_usd for t in turns):17.6f}  {keep:.2f}")


if __name__ == "__main__":
    long_contexts()
    long_chats()
