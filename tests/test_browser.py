"""The real app in a real browser: `streamlit run app.py` on 127.0.0.1, driven by headless Chromium.

Uses Debian's /usr/bin/chromium (`make browser` installs it); never `playwright install`.
Screenshots go to artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
SOURCES_UPLOAD = "Upload files"  # the dataset radio's labels in app.py
SOURCES_CRANFIELD = "Cranfield (bundled, judged documents)"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is missing: run `make browser`"),
]


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    """Launch Debian's Chromium, headless, without a sandbox (containers) or network chatter."""
    return {"executable_path": CHROMIUM,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Poll the health endpoint until it answers "ok"; fail early if the server died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200 and response.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url}/_stcore/health did not answer within {timeout_s:.0f} s")


@pytest.fixture
def app_url(tmp_path_factory) -> Iterator[str]:
    """A Streamlit server of the test's own: a session of an earlier test still running its script
    (a cold run of two configs) slowed the next test's reruns until its edits raced its clicks."""
    port = free_port()
    env = {**os.environ, "WORKBENCH_STORE": str(tmp_path_factory.mktemp("store") / "runs.sqlite"),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, process)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")[-3000:]


def test_compare_two_configs_in_the_browser(page, app_url):
    page.set_viewport_size({"width": 1600, "height": 1100})
    page.goto(app_url)
    page.get_by_text("Compare RAG configurations").wait_for(timeout=120_000)
    questions = page.get_by_label("Questions to evaluate")
    questions.fill("30")
    questions.press("Enter")
    page.wait_for_timeout(500)  # let the rerun the edit triggered start before clicking
    page.get_by_test_id("stAppRunningIcon").wait_for(state="hidden", timeout=60_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app_configure.png"), full_page=True)

    page.get_by_role("button", name="Run").click()
    page.get_by_text("30 queries,").first.wait_for(timeout=300_000)
    assert page.get_by_text("30 queries,").count() == 2
    assert page.get_by_text("Run failed").count() == 0

    page.get_by_role("tab", name="Results").click()
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # plotly draws after the element exists
    assert page.locator(".js-plotly-plot").count() == 5  # cost, monthly, lever waterfall, quality/cost, latency
    assert page.get_by_text("Cost per 1,000 queries").count() >= 1
    assert page.get_by_text("1. bm25").count() >= 1 and page.get_by_text("2. dense").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "app_results.png"), full_page=True)
    page.locator(".js-plotly-plot").nth(4).scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "app_results_charts.png"), full_page=True)

    page.get_by_role("tab", name="Drill-down").click()
    page.get_by_text("Relevant documents found").first.wait_for(timeout=60_000)
    assert page.get_by_text("Relevant documents found").count() == 2
    page.screenshot(path=str(ARTIFACTS / "app_drilldown.png"), full_page=True)
    assert (ARTIFACTS / "app_results.png").stat().st_size > 10_000


def test_column_settings_survive_switching_the_dataset(page, app_url):
    # Streamlit drops the values of widgets a run does not draw (the upload page stops before
    # the columns): the app must keep each column's settings anyway.
    page.set_viewport_size({"width": 1600, "height": 1100})
    page.goto(app_url)
    page.get_by_text("Compare RAG configurations").wait_for(timeout=120_000)
    page.get_by_test_id("stAppRunningIcon").wait_for(state="hidden", timeout=60_000)  # the first run is over
    size = page.get_by_role("spinbutton", name="Chunk size (tokens)").first
    model = page.get_by_role("textbox", name="Embedding model").first
    size.fill("384")
    size.press("Enter")
    page.wait_for_timeout(500)
    page.get_by_test_id("stAppRunningIcon").wait_for(state="hidden", timeout=60_000)
    before = model.input_value()
    assert before

    page.get_by_text(SOURCES_UPLOAD).click()
    page.wait_for_timeout(500)
    page.get_by_test_id("stAppRunningIcon").wait_for(state="hidden", timeout=60_000)
    assert page.get_by_role("spinbutton", name="Chunk size (tokens)").count() == 0  # the columns are not drawn
    page.get_by_text(SOURCES_CRANFIELD).click()
    page.get_by_role("spinbutton", name="Chunk size (tokens)").first.wait_for(timeout=60_000)
    page.get_by_test_id("stAppRunningIcon").wait_for(state="hidden", timeout=60_000)
    assert page.get_by_role("spinbutton", name="Chunk size (tokens)").first.input_value() == "384"
    assert page.get_by_role("textbox", name="Embedding model").first.input_value() == before
