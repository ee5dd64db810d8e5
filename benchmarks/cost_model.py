"""The cost model against hand-computed references for three workloads, and its token figures.

Each reference below is arithmetic typed from the price table (USD per million tokens:
Haiku 4.5 1 / 1.25 / 2 / 0.10 / 5, Sonnet 4.5 3 / 3.75 / 6 / 0.30 / 15 for input / 5m write /
1h write / cache read / output; batch halves every token price), independent of the code.
It then re-measures the tokenizer conversion factors in `workbench.tokens.TOKENS_PER_UNIT`
on the bundled chunking corpora, and states the (unverifiable offline) calibration.

    .venv/bin/python benchmarks/cost_model.py
"""

from __future__ import annotations

import os

from workbench.config import GenerationConfig, PipelineConfig
from workbench.costs import Workload, cost_per_query
from workbench.io import DATA_DIR
from workbench.prices import load_price_sheet
from workbench.tokens import CALIBRATION_FACTOR, TOKENS_PER_UNIT

M = 1e6

CASES = [
    (
        "A: Sonnet, no levers, 1k queries/day",
        PipelineConfig(generation=GenerationConfig(model="claude-sonnet-4-5", prompt_caching=False)),
        Workload(queries_per_day=1000, system_tokens=2000, chunk_tokens=400, k=5, query_tokens=50, output_tokens=300),
        # (2000 + 5*400 + 50) * 3 + 300 * 15
        ((2000 + 5 * 400 + 50) * 3 + 300 * 15) / M,
        30_000,
    ),
    (
        "B: Sonnet, 3k-token prefix cached (5m), 90% warm, 2 history turns",
        PipelineConfig(generation=GenerationConfig(model="claude-sonnet-4-5", cache_ttl="5m")),
        Workload(queries_per_day=1000, system_tokens=3000, chunk_tokens=500, k=4, query_tokens=40, history_turns=2,
                 tokens_per_turn=150, output_tokens=250, prompt_cache_hit_rate=0.9),
        # variable 2340*3 + write 0.1*3000*3.75 + read 0.9*3000*0.30 + output 250*15
        (2340 * 3 + 0.1 * 3000 * 3.75 + 0.9 * 3000 * 0.30 + 250 * 15) / M,
        30_000,
    ),
    (
        "C: 70/30 Haiku/Sonnet, 5k prefix cached (1h), 80% warm, half batched, 20% response-cache hits",
        PipelineConfig(generation=GenerationConfig(model="claude-sonnet-4-5", cache_ttl="1h")),
        Workload(queries_per_day=2000, system_tokens=5000, chunk_tokens=300, k=5, query_tokens=20, output_tokens=200,
                 prompt_cache_hit_rate=0.8, batch_share=0.5, response_cache_hit_rate=0.2,
                 routing_mix={"claude-haiku-4-5": 0.7, "claude-sonnet-4-5": 0.3}),
        # haiku 1520*1 + 0.2*5000*2 + 0.8*5000*0.1 + 200*5; sonnet 1520*3 + 0.2*5000*6 + 0.8*5000*0.3 + 200*15
        (0.7 * (1520 + 2000 + 400 + 1000) + 0.3 * (4560 + 6000 + 1200 + 3000)) * (1 - 0.5 * 0.5) * (1 - 0.2) / M,
        60_000,
    ),
]


def token_ratios() -> None:
    from tokenizers import Tokenizer

    from workbench.embedding import resolve_model

    claude = Tokenizer.from_file(str(DATA_DIR / "claude_tokenizer" / "tokenizer.json"))
    wordpiece = Tokenizer.from_file(os.path.join(resolve_model("all-MiniLM-L6-v2"), "tokenizer.json"))
    wordpiece.no_truncation()
    totals = [0, 0, 0, 0]
    print("\nlegacy-Claude tokens per unit of each chunking tokenizer (bundled chunking corpora)")
    for path in sorted((DATA_DIR / "chunking" / "corpora").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        c = len(claude.encode(text, add_special_tokens=False).ids)
        w = len(wordpiece.encode(text, add_special_tokens=False).ids)
        s = len(text.split())
        totals = [totals[0] + len(text), totals[1] + c, totals[2] + w, totals[3] + s]
        print(f"  {path.stem:<20} chars {len(text):>7}  claude {c:>6}  per wordpiece {c / w:.3f}  per word {c / s:.3f}")
    chars, c, w, s = totals
    print(f"  {'all':<20} chars {chars:>7}  claude {c:>6}  per wordpiece {c / w:.3f}  per word {c / s:.3f}")
    print(f"  in use: {dict(TOKENS_PER_UNIT)}")
    print(f"calibration factor (legacy tokenizer -> current Claude): {CALIBRATION_FACTOR} (assumed, unverified;"
          " no real counts offline; set WORKBENCH_TOKEN_CALIBRATION after `tokens.calibrate` with a key)")


def main() -> None:
    sheet = load_price_sheet()
    print(f"price table {sheet.path} dated {sheet.date} ({sheet.source})\n")
    worst = 0.0
    for name, config, workload, reference, per_month in CASES:
        b = cost_per_query(config, workload)
        error = abs(b.total - reference) / reference
        worst = max(worst, error)
        print(name)
        print(f"  per query  model ${b.total:.7f}  reference ${reference:.7f}  relative error {error:.1e}")
        print(f"  per month  model ${b.total * per_month:,.2f}  reference ${reference * per_month:,.2f}"
              f"  ({per_month:,} queries)")
        print(f"  breakdown  uncached ${b.uncached_input:.7f}  write ${b.cache_write:.7f}  read ${b.cache_read:.7f}"
              f"  output ${b.output:.7f}")
        print(f"  naive ${b.naive_total:.7f}; savings " + ", ".join(f"{k} ${v:.7f}" for k, v in b.savings.items()))
    print(f"\nworst relative error against the hand-computed references: {worst:.1e}")
    token_ratios()


if __name__ == "__main__":
    main()
