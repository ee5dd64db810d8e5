"""Runs out of the store: pandas frames, CSV and Parquet files, and MLflow tracking.

`runs_frame` has one row per run (identity, times, costs, one column per aggregate metric);
`queries_frame` one row per (run, query). `export_runs` writes either atomically; `export_mlflow`
logs completed runs to any MLflow tracking URI (the `mlflow` extra), once each.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .store import RunStore

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EXPORT_FORMATS", "runs_frame", "queries_frame", "export_runs", "export_mlflow"]


def runs_frame(store: RunStore, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per run: identity, status, times, costs, and one column per aggregate metric."""
    import pandas as pd

    records = [store.get(i) for i in run_ids] if run_ids is not None else store.runs()
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "run_id": r.id, "name": r.name, "status": r.status, "config_hash": r.config_hash,
            "dataset": r.dataset_name, "dataset_fingerprint": r.dataset_fingerprint,
            "sweep_id": r.sweep_id, "started_at": r.started_at, "finished_at": r.finished_at,
            "duration_s": r.duration_s, "workbench_version": r.versions.get("workbench", ""),
            "embedding_model": r.versions.get("embedding_model", ""),
            "n_queries": r.n_queries, "n_chunks": r.n_chunks, "mean_latency_s": r.mean_latency_s,
            "embedded_texts": r.embedding.get("misses", 0), "error": r.error,
        }
        row.update({f"cost.{k}": v for k, v in r.costs.items()})
        row.update(r.aggregates)
        rows.append(row)
    return pd.DataFrame(rows)


def queries_frame(store: RunStore, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (run, query): ranked ids and scores as JSON text, one column per metric."""
    import pandas as pd

    ids = list(run_ids) if run_ids is not None else [r.id for r in store.runs()]
    rows = []
    for run_id in ids:
        run_id = store.get(run_id).id
        for q in store.query_records(run_id):
            row: dict[str, Any] = {
                "run_id": run_id, "query_id": q.query_id, "query": q.query,
                "retrieved": json.dumps(list(q.retrieved)), "chunk_ids": json.dumps(list(q.chunk_ids)),
                "scores": json.dumps(list(q.scores)), "latency_s": q.latency_s,
            }
            row.update(q.metrics)
            rows.append(row)
    return pd.DataFrame(rows)


EXPORT_FORMATS = (".csv", ".parquet")


def export_runs(
    store: RunStore,
    path: str | Path,
    *,
    level: Literal["runs", "queries"] = "runs",
    run_ids: Sequence[str] | None = None,
) -> Path:
    """Write runs (one row each) or their per-query results to CSV or Parquet, atomically.

    Args:
        store: the run store.
        path: the output file; its suffix (.csv or .parquet) picks the format.
        level: "runs" for one row per run, "queries" for one row per (run, query).
        run_ids: which runs (ids or unique prefixes); all runs by default.

    Returns:
        The path written.

    Raises:
        ValueError: an unknown suffix or level.
        StoreError: an unknown run id.
    """
    import io

    from .io import atomic_write_bytes

    path = Path(path)
    if path.suffix not in EXPORT_FORMATS:
        raise ValueError(f"cannot export to {str(path)!r}: use a file ending in one of {list(EXPORT_FORMATS)}")
    builders = {"runs": runs_frame, "queries": queries_frame}
    if level not in builders:
        raise ValueError(f"unknown export level {level!r}; choose one of {sorted(builders)}")
    frame = builders[level](store, run_ids)
    buffer = io.BytesIO()
    if path.suffix == ".csv":
        frame.to_csv(buffer, index=False)
    else:
        frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def export_mlflow(
    store: RunStore,
    *,
    tracking_uri: str,
    experiment: str = "workbench",
    run_ids: Sequence[str] | None = None,
) -> dict[str, str]:
    """Log completed runs to MLflow tracking: params (the flat config), metrics, tags, config.

    Runs already exported to this experiment (tag `workbench.run_id`) are not logged again.

    Args:
        store: the run store.
        tracking_uri: an MLflow tracking URI, e.g. "file:///tmp/mlruns" or "http://host:5000".
        experiment: the MLflow experiment name (created if missing).
        run_ids: which runs; every completed run by default.

    Returns:
        workbench run id -> MLflow run id, for every requested run (new or already there).

    Raises:
        ImportError: mlflow is not installed (`pip install workbench[mlflow]`).
    """
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ImportError("MLflow export needs the mlflow extra: pip install 'workbench[mlflow]'") from exc
    from .config import to_dict

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    records = ([store.get(i) for i in run_ids] if run_ids is not None
               else store.runs(status="completed"))
    exported: dict[str, str] = {}
    for record in records:
        existing = client.search_runs(
            [experiment_id], filter_string=f"tags.`workbench.run_id` = '{record.id}'", max_results=1
        )
        if existing:
            exported[record.id] = existing[0].info.run_id
            continue
        tags = {
            "workbench.run_id": record.id, "workbench.config_hash": record.config_hash,
            "workbench.dataset": record.dataset_name,
            "workbench.dataset_fingerprint": record.dataset_fingerprint,
            "workbench.status": record.status, "mlflow.runName": record.name,
        }
        tags.update({f"version.{k}": v for k, v in record.versions.items()})
        run = client.create_run(
            experiment_id, start_time=int(record.started_at.timestamp() * 1000), tags=tags
        )
        params = _flatten(to_dict(record.config))
        metrics = dict(record.aggregates)
        metrics.update({f"cost.{k}": v for k, v in record.costs.items()})
        metrics["duration_s"] = record.duration_s
        metrics["mean_latency_s"] = record.mean_latency_s
        from mlflow.entities import Metric, Param

        stamp = int(record.finished_at.timestamp() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(_mlflow_key(k), float(v), stamp, 0) for k, v in sorted(metrics.items())],
            params=[Param(_mlflow_key(k), str(v)[:6000]) for k, v in sorted(params.items())],
        )
        client.log_text(run.info.run_id, record.config_toml, "config.toml")
        status = "FINISHED" if record.status == "completed" else "FAILED"
        client.set_terminated(run.info.run_id, status=status, end_time=stamp)
        exported[record.id] = run.info.run_id
    return exported


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _mlflow_key(name: str) -> str:
    # MLflow keys allow letters, digits, _ - . space / only; "ndcg@10" becomes "ndcg_at_10".
    return "".join(c if c.isalnum() or c in "_-. /" else "_at_" if c == "@" else "_" for c in name)
