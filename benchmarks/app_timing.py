"""Time from clicking Run to results in the app, and the app against the CLI, on Cranfield.

Clicks (two configs, the bm25 and dense presets; each phase a fresh process driving the real
app.py through Streamlit's AppTest, each with its own run store unless said):
  cold:   an empty embedding cache: the dense config embeds every document;
          then a rerun that changes only the dense config's k (must embed nothing);
  warm:   a new process on the same, now filled, cache and an empty run store (embeddings
          come from disk, the evaluation is computed);
  stored: a new process on the cold phase's run store: the identical runs are served from it.
Ratios are against the cold click, measured on this machine in this run.

App / CLI (issue 13: three configs, bm25, dense and hybrid, each side on its own empty cache
and store): the real server as `make run` starts it (`streamlit run app.py`, the project's
.streamlit/config.toml: no file watcher), driven by headless Chromium from the Run click to
three results, against `python -m workbench evaluate` with the same configs, start to exit.
Target: app / CLI <= 1.2. `--watcher` adds the same app run with the file watcher on.

    python benchmarks/app_timing.py [--queries N] [--part clicks|app-cli|all] [--watcher]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PRESETS = ("bm25", "dense", "hybrid")


def click(at) -> float:
    t0 = time.perf_counter()
    at.button(key="run").click().run()
    seconds = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    errors = [e.value for e in at.error]
    if errors:
        raise RuntimeError(errors)
    return seconds


def phase(name: str, queries: int) -> dict:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=3600)
    at.run()
    at.number_input(key="data.n_queries").set_value(queries).run()
    out = {"phase": name, "click_s": click(at)}
    outcomes = at.session_state["outcomes"]
    out["misses"] = {k: o.embedded for k, o in outcomes.items()}
    out["served"] = {k: o.reused for k, o in outcomes.items()}
    out["build_s"] = {k: dict(o.result.build_s) for k, o in outcomes.items()}
    if name == "cold":
        at.number_input(key="cfg1.retrieval.k").set_value(50)
        out["rerun_k_s"] = click(at)
        out["rerun_k_misses"] = {k: o.embedded for k, o in at.session_state["outcomes"].items()}
    return out


def env_for(folder: Path, store: Path | None = None) -> dict[str, str]:
    return {**os.environ, "WORKBENCH_CACHE_DIR": str(folder), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "WORKBENCH_STORE": str(store or folder / "runs.sqlite")}


def clicks(queries: int, cache: Path) -> None:
    stores = {"cold": cache / "cold.sqlite", "warm": cache / "warm.sqlite", "stored": cache / "cold.sqlite"}
    results = {}
    for name, store in stores.items():
        done = subprocess.run([sys.executable, __file__, "--phase", "cold" if name == "cold" else name,
                               "--queries", str(queries)], env=env_for(cache, store), capture_output=True,
                              text=True, check=False)
        if done.returncode:
            sys.exit(f"phase {name} failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    cold, warm, stored = results["cold"], results["warm"], results["stored"]
    print(f"cache: {cache}; {queries} Cranfield questions; configs 1. bm25 and 2. dense (presets)")
    print(f"cold cache, click -> results: {cold['click_s']:8.2f} s  (1.00x)  embedded texts {cold['misses']}")
    print(f"rerun, only k changed:        {cold['rerun_k_s']:8.2f} s  ({cold['rerun_k_s'] / cold['click_s']:.3f}x)"
          f"  embedded texts {cold['rerun_k_misses']}")
    print(f"warm cache, new process:      {warm['click_s']:8.2f} s  ({warm['click_s'] / cold['click_s']:.3f}x)"
          f"  embedded texts {warm['misses']}")
    print(f"stored runs, new process:     {stored['click_s']:8.2f} s  ({stored['click_s'] / cold['click_s']:.3f}x)"
          f"  served from the run store {stored['served']}")
    print(f"build seconds (chunk/index) cold {cold['build_s']}")
    print(f"build seconds (chunk/index) warm {warm['build_s']}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_click_s(folder: Path, queries: int, *, watcher: bool) -> float:
    """A real `streamlit run app.py` on an empty cache: seconds from the Run click to three results."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", APP, "--server.port", str(port), "--server.address",
               "127.0.0.1"] + (["--server.fileWatcherType", "auto"] if watcher else [])
    server = subprocess.Popen(command, cwd=ROOT, env=env_for(folder), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1600, "height": 1100})
            page.goto(url)
            page.get_by_text("Compare RAG configurations").wait_for(timeout=120_000)
            page.get_by_label("Questions to evaluate").wait_for(timeout=600_000)  # loading Cranfield
            if queries != 225:
                box = page.get_by_label("Questions to evaluate")
                box.fill(str(queries))
                box.press("Enter")
            slider = page.get_by_test_id("stSidebar").get_by_role("slider").first
            slider.focus()
            slider.press("ArrowRight")  # 2 -> 3 configurations: bm25, dense, hybrid
            page.get_by_text("Config 3").wait_for(timeout=60_000)
            page.wait_for_timeout(500)
            page.get_by_test_id("stAppRunningIcon").wait_for(state="hidden", timeout=60_000)
            t0 = time.perf_counter()
            page.get_by_role("button", name="Run").click()
            done = page.get_by_text(f"{queries} queries,")
            while done.count() < 3:
                if page.get_by_text("Run failed").count():
                    raise RuntimeError("a run failed in the app")
                page.wait_for_timeout(200)
            seconds = time.perf_counter() - t0
            browser.close()
        return seconds
    finally:
        server.terminate()
        server.wait(timeout=30)


def app_cli(watcher: bool) -> None:
    """Every Cranfield question (the CLI evaluates them all)."""
    queries = 225
    configs = [a for name in PRESETS for a in ("--config", str(ROOT / "configs" / f"{name}.toml"))]
    command = [sys.executable, "-m", "workbench", "evaluate", "--dataset", "cranfield", *configs, "--quiet"]
    print(f"app vs CLI, {' + '.join(PRESETS)} on {queries} Cranfield questions, each on an empty cache and store:")
    with tempfile.TemporaryDirectory(prefix="workbench-cli-") as folder:
        t0 = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=env_for(Path(folder)), check=True, capture_output=True)
        cli = time.perf_counter() - t0
    print(f"CLI `workbench evaluate`, start to exit:      {cli:8.2f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="workbench-app-") as folder:
        app = app_click_s(Path(folder), queries, watcher=False)
    print(f"app (no file watcher), Run click to results: {app:8.2f} s  app/CLI {app / cli:.2f} (target <= 1.2)")
    if watcher:
        with tempfile.TemporaryDirectory(prefix="workbench-app-") as folder:
            on = app_click_s(Path(folder), queries, watcher=True)
        print(f"app with the file watcher on:                {on:8.2f} s  app/CLI {on / cli:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=225,
                        help="questions evaluated by the clicks (Cranfield has 225; app vs CLI uses all)")
    parser.add_argument("--part", choices=["clicks", "app-cli", "all"], default="all")
    parser.add_argument("--watcher", action="store_true", help="also time the app with the file watcher on")
    parser.add_argument("--phase", choices=["cold", "warm", "stored"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.queries)))
        return
    if args.part in ("clicks", "all"):
        with tempfile.TemporaryDirectory(prefix="workbench-bench-") as cache:
            clicks(args.queries, Path(cache))
    if args.part in ("app-cli", "all"):
        app_cli(args.watcher)


if __name__ == "__main__":
    main()
