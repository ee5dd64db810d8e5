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
    from .runs import evaluate
    from .store import RunStore

    dataset = load_dataset(args.dataset)
    configs = [load_config(path) for path in args.config]
    store = RunStore(args.store)
    rows, sources = [], []
    for config in configs:
        outcome = evaluate(config, dataset, store=store, progress=not args.quiet)
        result = outcome.result
        sources.append(f"{config.name}: {outcome.describe()}")
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
    table = pd.DataFrame(rows)
    print(f"dataset {dataset.name}: {len(dataset.documents)} documents, {len(dataset.evaluated_queries)} evaluated queries")
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(table.to_string(index=False))
    print("\n".join(sources))
    return 0


# -- sweep and runs -------------------------------------------------------------------------


def _store_errors(command):  # type: ignore[no-untyped-def]
    """Report the store's, the sweep's and the statistics' errors as messages, exit status 2."""

    def run(args: argparse.Namespace) -> int:
        from .store import StoreError
        from .sweep import SweepRefused

        try:
            return command(args)
        except (StoreError, SweepRefused, ValueError, KeyError) as exc:
            print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
            return 2

    return run


@_store_errors
def _sweep(args: argparse.Namespace) -> int:
    import dataclasses

    import pandas as pd

    from .store import RunStore
    from .sweep import SweepPlan, load_sweep_spec, sweep

    spec = load_sweep_spec(args.spec)
    overrides = {k: v for k, v in (("executor", args.executor), ("workers", args.workers),
                                   ("ray_address", args.ray_address)) if v is not None}
    settings = dataclasses.replace(spec.settings, **overrides)

    def confirm(plan: SweepPlan) -> bool:
        if args.yes:
            return True
        if not sys.stdin.isatty():
            print(f"refusing without --yes: {plan.describe()}", file=sys.stderr)
            return False
        return input(f"{plan.describe()}.\nRun it? [y/N] ").strip().lower() in ("y", "yes")

    result = sweep(spec.base, spec.space, dataset=args.dataset or spec.dataset, store=RunStore(args.store),
                   settings=settings, confirm=confirm, progress=not args.quiet,
                   on_trial=None if args.quiet else lambda t: print(f"{t.status:>8} {t.run_id} {t.config.name}"))
    frame = result.to_frame().drop(columns=["config_hash", "error"])
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.precision", 4):
        print(frame.to_string(index=False))
    print(
        f"sweep {result.sweep_id} on {result.dataset_name}: {result.count('computed')} computed, "
        f"{result.count('reused')} found in the store, {result.count('failed')} failed; "
        f"{sum(t.embedded_texts for t in result.trials)} texts embedded; {result.wall_s:.1f} s"
    )
    for trial in result.trials:
        if trial.status == "failed":
            print(f"failed {trial.config.name}: {trial.error}", file=sys.stderr)
    return 1 if result.count("failed") else 0


@_store_errors
def _runs_list(args: argparse.Namespace) -> int:
    import pandas as pd

    from .export import runs_frame
    from .store import RunStore, resolve_store_path

    path = resolve_store_path(args.store)
    if not path.exists():  # a fresh clone: an empty history is not an error
        print(f"no runs yet (no run store at {str(path)!r}; `workbench evaluate` or `workbench sweep` makes one)")
        return 0
    store = RunStore(path, read_only=True)
    records = store.runs(dataset=args.dataset, status=args.status, sweep_id=args.sweep, limit=args.limit)
    if not records:
        print(f"no runs yet in {str(store.path)!r}" if not len(store) else f"no runs match in {str(store.path)!r}")
        return 0
    frame = runs_frame(store, [r.id for r in records])
    metrics = args.metric or sorted({m for r in records for m in r.aggregates})[:6]
    columns = ["run_id", "name", "status", "dataset", "finished_at", "duration_s", "mean_latency_s", *metrics]
    frame["finished_at"] = frame["finished_at"].map(lambda t: t.strftime("%Y-%m-%d %H:%M"))
    with pd.option_context("display.width", 250, "display.max_colwidth", 60, "display.precision", 4):
        print(frame.reindex(columns=columns).to_string(index=False))
    return 0


@_store_errors
def _runs_compare(args: argparse.Namespace) -> int:
    from .stats import compare_paired
    from .store import RunStore, StoreError

    store = RunStore(args.store, read_only=True)
    a, b = store.get(args.a), store.get(args.b)
    if a.dataset_fingerprint != b.dataset_fingerprint:
        raise StoreError(store.path, f"runs {a.id} ({a.dataset_name}) and {b.id} ({b.dataset_name}) used "
                         "different datasets", "compare runs of the same dataset")
    metrics = args.metric or sorted(set(a.aggregates) & set(b.aggregates))
    print(f"A = {a.id} {a.name}\nB = {b.id} {b.name}\n(B minus A, paired by query)")
    for metric in metrics:
        result = compare_paired(store.per_query(a.id, metric), store.per_query(b.id, metric), metric=metric,
                                n_resamples=args.resamples, seed=args.seed)
        print(result.summary())
    return 0


@_store_errors
def _runs_pareto(args: argparse.Namespace) -> int:
    from .stats import pareto_frontier
    from .store import RunStore

    store = RunStore(args.store, read_only=True)
    records = [r for r in store.runs(dataset=args.dataset, status="completed") if args.quality in r.aggregates]
    if not records:
        print(f"no completed runs report {args.quality!r} in {store.path}")
        return 0
    points = {r.id: {"quality": r.aggregates[args.quality], "cost": r.costs.get("per_query_usd", 0.0),
                     "latency": r.mean_latency_s} for r in records}
    front = pareto_frontier(points, {"quality": "max", "cost": "min", "latency": "min"})
    names = {r.id: r.name for r in records}
    print(f"{len(front)} of {len(records)} runs on the frontier of {args.quality} (max), "
          "cost per query (min), mean latency (min):")
    for run_id in sorted(front, key=lambda i: -points[i]["quality"]):
        p = points[run_id]
        print(f"{run_id} {p['quality']:.4f} ${p['cost']:.6f}/query {1000 * p['latency']:.2f} ms  {names[run_id]}")
    return 0


@_store_errors
def _runs_export(args: argparse.Namespace) -> int:
    from .export import export_mlflow, export_runs
    from .store import RunStore

    if args.path is None and args.mlflow is None:
        raise ValueError("say where to export: a .csv or .parquet PATH, or --mlflow TRACKING_URI")
    store = RunStore(args.store, read_only=True)
    if args.path is not None:
        path = export_runs(store, args.path, level=args.level, run_ids=args.ids)
        print(f"wrote {path}")
    if args.mlflow is not None:
        exported = export_mlflow(store, tracking_uri=args.mlflow, experiment=args.experiment, run_ids=args.ids)
        print(f"{len(exported)} runs in MLflow experiment {args.experiment!r} at {args.mlflow}")
    return 0


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    store_help = "run store file or sqlite:/// URL (default: $WORKBENCH_STORE or data/runs.sqlite)"
    sw = sub.add_parser("sweep", help="run a grid or random search from a sweep TOML; finished trials are reused")
    sw.add_argument("spec", help="sweep TOML: dataset, [base], [space] of dotted fields, [settings]")
    sw.add_argument("--dataset", help="override the spec's dataset")
    sw.add_argument("--store", help=store_help)
    sw.add_argument("--executor", choices=["local", "ray"], help="override settings.executor")
    sw.add_argument("--workers", type=int, help="override settings.workers (parallel trials)")
    sw.add_argument("--ray-address", help="override settings.ray_address ('auto', 'ray://head:10001')")
    sw.add_argument("--yes", action="store_true", help="run a large sweep without asking")
    sw.add_argument("--quiet", action="store_true", help="no progress output")
    sw.set_defaults(func=_sweep)

    runs = sub.add_parser("runs", help="list, compare and export stored runs").add_subparsers(
        dest="runs_command", required=True)
    ls = runs.add_parser("list", help="stored runs with their main metrics")
    ls.add_argument("--store", help=store_help)
    ls.add_argument("--dataset", help="only runs of this dataset name")
    ls.add_argument("--status", choices=["completed", "failed"])
    ls.add_argument("--sweep", help="only runs of this sweep id")
    ls.add_argument("--limit", type=int, help="only the newest N runs")
    ls.add_argument("--metric", action="append", help="metric column to show; repeat (default: the first six)")
    ls.set_defaults(func=_runs_list)
    cp = runs.add_parser("compare", help="paired bootstrap CI and randomisation test of B minus A")
    cp.add_argument("a", help="baseline run id (or unique prefix)")
    cp.add_argument("b", help="candidate run id (or unique prefix)")
    cp.add_argument("--store", help=store_help)
    cp.add_argument("--metric", action="append", help="metric to compare; repeat (default: all shared)")
    cp.add_argument("--resamples", type=int, default=10_000)
    cp.add_argument("--seed", type=int, default=0)
    cp.set_defaults(func=_runs_compare)
    pa = runs.add_parser("pareto", help="runs no other run beats on quality, cost per query and latency")
    pa.add_argument("--quality", default="ndcg@10", help="the quality metric (default ndcg@10)")
    pa.add_argument("--dataset", help="only runs of this dataset name")
    pa.add_argument("--store", help=store_help)
    pa.set_defaults(func=_runs_pareto)
    ex = runs.add_parser("export", help="runs to CSV/Parquet, and/or to MLflow tracking")
    ex.add_argument("path", nargs="?", help="output .csv or .parquet file")
    ex.add_argument("--level", choices=["runs", "queries"], default="runs", help="one row per run or per query")
    ex.add_argument("--ids", nargs="+", help="only these run ids (default: all)")
    ex.add_argument("--mlflow", metavar="TRACKING_URI", help="also log to MLflow (needs the mlflow extra)")
    ex.add_argument("--experiment", default="workbench", help="MLflow experiment name")
    ex.add_argument("--store", help=store_help)
    ex.set_defaults(func=_runs_export)


@_store_errors
def _agents(args: argparse.Namespace) -> int:
    import json

    from .agents import AgentConfig, load_environment
    from .evaluation.agents import evaluate_agents

    config = AgentConfig(env=args.env, pattern=args.pattern, model=args.model, trials=args.trials,
                         max_steps=args.max_steps, approval=args.approval, limit=args.limit,
                         tasks=tuple(t for t in (args.tasks or "").split(",") if t), base_url=args.base_url or "")
    options = {"task_file": args.task_file} if args.env == "diagram" else {"dataset": args.dataset}
    ask = (lambda r: input(f"approve {r['tool']} {json.dumps(r['arguments'])}? [y/N] ").strip().lower() == "y")
    from .generation.base import MissingAPIKeyError

    try:
        report = evaluate_agents(config, load_environment(args.env, **options), store=args.store, ask=ask)
    except (MissingAPIKeyError, ImportError) as exc:  # a Claude model without a key; the local extra missing
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = report.summary()
    if args.json:
        print(json.dumps({"run_id": report.run_id, **summary}, sort_keys=True))
    else:
        print(f"{config.env} / {config.pattern} / {config.model}: {int(summary['tasks'])} tasks x {config.trials} trials"
              f" (run {report.run_id})")
        for name, value in summary.items():
            print(f"  {name:26s} {value:.4g}")
    return 0


def _add_agents_command(sub: argparse._SubParsersAction) -> None:
    from .agents import APPROVAL_POLICIES, ENVIRONMENTS, PATTERNS

    ag = sub.add_parser("agents", help="evaluate a tool-calling agent (pattern x model) on an environment's tasks")
    ag.add_argument("--env", choices=ENVIRONMENTS, default="diagram")
    ag.add_argument("--pattern", choices=PATTERNS, default="react")
    ag.add_argument("--model", default="scripted", help="scripted, local (Gemma 3 270M), a .gguf path or a Claude id")
    ag.add_argument("--trials", type=int, default=1, help="trials per task (pass^k uses k = trials)")
    ag.add_argument("--max-steps", type=int, default=40, help="model calls per trial before status step_limit")
    ag.add_argument("--approval", choices=APPROVAL_POLICIES, default="approve_all", help="review of destructive tools")
    ag.add_argument("--tasks", help="comma-separated task ids (default: all)")
    ag.add_argument("--limit", type=int, default=0, help="run only the first N tasks")
    ag.add_argument("--task-file", help="a diagram task .jsonl (default: the bundled set)")
    ag.add_argument("--dataset", default="chunking", help="documents env: the dataset whose questions are tasks")
    ag.add_argument("--base-url", help="Messages API endpoint for Claude models")
    ag.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ag.add_argument("--store", help="run store file or sqlite:/// URL (default: $WORKBENCH_STORE or data/runs.sqlite)")
    ag.set_defaults(func=_agents)


# -- vector databases ------------------------------------------------------------------------


def _ingest(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from .config import PipelineConfig, load_config
    from .ingest import index_folder, ingest, ingest_every, parse_interval

    config = load_config(args.config) if args.config else PipelineConfig()
    folder = index_folder(args.index)

    def run():  # type: ignore[no-untyped-def]
        return ingest(args.folder, folder, config=config, backend=args.backend, url=args.url)

    def show(report) -> None:  # type: ignore[no-untyped-def]
        print(json.dumps(dataclasses.asdict(report), sort_keys=True) if args.json else report.summary(), flush=True)

    if args.every:
        try:
            return 1 if ingest_every(parse_interval(args.every), run, show, runs=args.runs) else 0
        except KeyboardInterrupt:
            return 0
    try:
        show(run())
    except (ValueError, OSError) as exc:  # configs, folders, backends (VectorStoreError is a ValueError)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a database that died mid-ingest: the manifest lets it resume
        print(f"error: {type(exc).__name__}: {exc}; run the same command again to resume", file=sys.stderr)
        return 1
    return 0


def _vectordb(args: argparse.Namespace) -> int:
    import json

    from .datasets import load_dataset
    from .evaluation.vectordb import BACKEND_CHOICES, compare_backends, format_table, synthetic_comparison

    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKEND_CHOICES]
    if unknown:
        print(f"error: unknown backends {unknown}; choose from {sorted(BACKEND_CHOICES)}", file=sys.stderr)
        return 2
    results = compare_backends(load_dataset(args.dataset), names, queries=args.queries)
    if args.scale:
        results += synthetic_comparison(args.scale, names, queries=args.queries)
    for result in results:
        if args.json:
            print(json.dumps(result.to_dict(), sort_keys=True))
    if not args.json:
        print(format_table(results))
    return 0


def _add_vector_commands(sub: argparse._SubParsersAction) -> None:
    from .vectorstores import BACKENDS

    ing = sub.add_parser("ingest", help="build or update a persistent vector index of a folder (changed documents only)")
    ing.add_argument("folder", help="a folder of .txt/.md/.html/.pdf files")
    ing.add_argument("--index", required=True, help="index name (kept in data/indexes/NAME) or a folder path")
    ing.add_argument("--backend", choices=sorted(BACKENDS), help="backend of a new index (default: the config's)")
    ing.add_argument("--url", help="server of a new index (postgresql://..., http://host:port); default embedded")
    ing.add_argument("--config", help="a TOML config: chunking, embedding and index settings")
    ing.add_argument("--json", action="store_true", help="print the report as one JSON object")
    ing.add_argument("--every", help="repeat on a schedule, e.g. 10m, 1h (Ctrl-C stops)")
    ing.add_argument("--runs", type=int, help="with --every: stop after N runs")
    ing.set_defaults(func=_ingest)
    vd = sub.add_parser("vectordb", help="compare vector backends: recall vs exact, filters, latency, size, memory")
    vd.add_argument("--dataset", default="chunking", help="bundled name (cranfield, chunking) or a folder")
    vd.add_argument("--backends", default="faiss-flat,faiss-hnsw,pgvector,chroma,lancedb,milvus,qdrant-local",
                    help="comma-separated backends (see workbench.evaluation.vectordb.BACKEND_CHOICES)")
    vd.add_argument("--scale", type=int, action="append", help="also run on N synthetic 384-d vectors; repeat")
    vd.add_argument("--queries", type=int, default=200, help="queries per run (default 200)")
    vd.add_argument("--json", action="store_true", help="one JSON object per backend and run")
    vd.set_defaults(func=_vectordb)


def _kinds_help() -> str:
    """Every kind a config may name, read from the stage registries."""
    from .registry import REGISTRIES

    lines = [f"  {field} = {' | '.join(r.choices())}" for field, r in REGISTRIES.items()]
    return "kinds a config may name (workbench.registry):\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="run configs on a dataset and print their retrieval metrics",
                        epilog=_kinds_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--dataset", default="cranfield", help="bundled name (cranfield, chunking) or a folder")
    ev.add_argument("--config", action="append", required=True, help="a TOML config; repeat to compare")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.add_argument("--store", help="run store file or sqlite:/// URL (default: $WORKBENCH_STORE or data/runs.sqlite)")
    ev.set_defaults(func=_store_errors(_evaluate))
    _add_run_commands(sub)
    _add_agents_command(sub)
    _add_vector_commands(sub)
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
