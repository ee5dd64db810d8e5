"""The command line: `python -m workbench evaluate --dataset cranfield --config configs/hybrid.toml`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def _evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from .config import load_config
    from .datasets import load_dataset
    from .experiment import run_experiment

    dataset = load_dataset(args.dataset)
    configs = [load_config(path) for path in args.config]
    rows = []
    for config in configs:
        result = run_experiment(config, dataset, progress=not args.quiet)
        latencies = sorted(r.latency_s for r in result.rows)
        rows.append(
            {
                "config": config.name,
                **{name: round(value, 4) for name, value in result.aggregates.items()},
                "chunks": result.n_chunks,
                "p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else float("nan"),
                "embedded": result.embedding_stats.get("misses", 0),
                "cache_hits": result.embedding_stats.get("hits", 0),
            }
        )
    table = pd.DataFrame(rows).set_index("config")
    print(f"dataset {dataset.name}: {len(dataset.documents)} documents, {len(dataset.evaluated_queries)} evaluated queries")
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(table.to_string())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="run configs on a dataset and print their retrieval metrics")
    ev.add_argument("--dataset", default="cranfield", help="bundled name (cranfield, chunking) or a folder")
    ev.add_argument("--config", action="append", required=True, help="a TOML config; repeat to compare")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from .config import ConfigError
    from .datasets import DatasetError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
