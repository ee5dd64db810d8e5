"""Tests of exporting runs: frames, CSV and Parquet files, and a real local MLflow store."""

from __future__ import annotations

import pandas as pd
import pytest

from test_store import make_result
from workbench.export import export_mlflow, export_runs, queries_frame, runs_frame
from workbench.store import RunStore


def test_export_csv_and_parquet(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    a = store.save(make_result(128))
    b = store.save(make_result(512, offset=0.5))
    frame = runs_frame(store)
    assert list(frame["run_id"]) == [a, b]
    assert frame.loc[1, "ndcg@10"] == pytest.approx(0.65)
    csv_path = export_runs(store, tmp_path / "out" / "runs.csv")
    assert pd.read_csv(csv_path)["ndcg@10"].tolist() == pytest.approx([0.15, 0.65])
    pq = export_runs(store, tmp_path / "q.parquet", level="queries", run_ids=[b])
    queries = pd.read_parquet(pq)
    assert len(queries) == 4 and set(queries["run_id"]) == {b}
    assert queries["ndcg@10"].tolist() == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert len(queries_frame(store)) == 8
    with pytest.raises(ValueError, match=r"\.json.*\['.csv', '.parquet'\]"):
        export_runs(store, tmp_path / "x.json")
    with pytest.raises(ValueError, match="unknown export level 'rows'"):
        export_runs(store, tmp_path / "x.csv", level="rows")  # type: ignore[arg-type]


@pytest.mark.slow
def test_export_to_a_local_mlflow_store(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    store = RunStore(tmp_path / "runs.sqlite")
    a = store.save(make_result(128))
    b = store.save(make_result(512, offset=0.5))
    # a local file store: MLflow 3 refuses the old ./mlruns folder backend, so a SQLite file
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exported = export_mlflow(store, tracking_uri=uri, experiment="wb-test")
    assert set(exported) == {a, b}
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    run = client.get_run(exported[b])
    assert run.data.metrics["ndcg_at_10"] == pytest.approx(0.65)
    assert run.data.params["chunking.size"] == "512"
    assert run.data.tags["workbench.run_id"] == b
    assert run.info.status == "FINISHED"
    again = export_mlflow(store, tracking_uri=uri, experiment="wb-test")  # idempotent
    assert again == exported
    experiment = client.get_experiment_by_name("wb-test")
    assert len(client.search_runs([experiment.experiment_id])) == 2
