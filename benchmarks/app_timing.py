"""Time from clicking Run to results in the app: two configs (bm25, dense presets) on Cranfield.

Each phase runs in a fresh process driving the real app.py through Streamlit's AppTest:
  cold: an empty embedding cache: the dense config embeds every document;
        then a rerun that changes only the dense config's k (must embed nothing);
  warm: a new process on the same, now filled, cache (embeddings come from disk).
Ratios are against the cold click, measured on this machine in this run.

    python benchmarks/app_timing.py [--queries N] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = str(Path(__file__).resolve().parent.parent / "app.py")


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
    out["build_s"] = {k: dict(o.result.build_s) for k, o in outcomes.items()}
    if name == "cold":
        at.number_input(key="cfg1.retrieval.k").set_value(50)
        out["rerun_k_s"] = click(at)
        outcomes = at.session_state["outcomes"]
        out["rerun_k_misses"] = {k: o.embedded for k, o in outcomes.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=225, help="questions evaluated (Cranfield has 225)")
    parser.add_argument("--cache", help="embedding cache folder; default a new empty temporary one")
    parser.add_argument("--phase", choices=["cold", "warm"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.queries)))
        return
    cache = args.cache or tempfile.mkdtemp(prefix="workbench-bench-")
    env = {**os.environ, "WORKBENCH_CACHE_DIR": cache, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "WORKBENCH_STORE": str(Path(cache) / "runs.sqlite")}
    results = {}
    for name in ("cold", "warm"):
        done = subprocess.run([sys.executable, __file__, "--phase", name, "--queries", str(args.queries)],
                              env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            sys.exit(f"phase {name} failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    cold, warm = results["cold"], results["warm"]
    print(f"cache: {cache}; {args.queries} Cranfield questions; configs 1. bm25 and 2. dense (presets)")
    print(f"cold cache, click -> results: {cold['click_s']:8.2f} s  (1.00x)  embedded texts {cold['misses']}")
    print(f"rerun, only k changed:        {cold['rerun_k_s']:8.2f} s  ({cold['rerun_k_s'] / cold['click_s']:.3f}x)"
          f"  embedded texts {cold['rerun_k_misses']}")
    print(f"warm cache, new process:      {warm['click_s']:8.2f} s  ({warm['click_s'] / cold['click_s']:.3f}x)"
          f"  embedded texts {warm['misses']}")
    print(f"build seconds (chunk/index) cold {cold['build_s']}")
    print(f"build seconds (chunk/index) warm {warm['build_s']}")


if __name__ == "__main__":
    main()
