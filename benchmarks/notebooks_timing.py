"""Wall time of each notebook with a cold embedding cache, then again with the cache it left (warm).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/notebooks_timing.py [01 02 ...] [--warm-only]

Each notebook runs top to bottom in a fresh kernel (nbclient), in memory: the stored notebook is
not changed. "Cold" uses a new, empty WORKBENCH_CACHE_DIR (every chunk, sentence and query is
embedded, and MaxSim's token vectors computed); "warm" runs the notebook again on the cache the
cold run filled, in a new kernel (models still load). `--warm-only` runs once on the shared dev
cache instead ($WORKBENCH_CACHE_DIR, default .cache/dev). The ratio is warm / cold, measured in
this process. The load average is printed because on a shared machine it moves the figures.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def run(path: Path, cache: Path) -> float:
    """Seconds to execute the notebook at `path` in a fresh kernel with `cache` as the embedding cache."""
    import nbformat
    from nbclient import NotebookClient

    os.environ["WORKBENCH_CACHE_DIR"] = str(cache)  # the kernel inherits this process's environment
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", help="notebook number prefixes, e.g. 01 03 (default: all)")
    parser.add_argument("--warm-only", action="store_true", help="one run on the shared dev cache")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    chosen = [p for p in NOTEBOOKS if not args.which or p.name[:2] in args.which]
    if not chosen:
        raise SystemExit(f"no notebook matches {args.which}; known: {[p.name for p in NOTEBOOKS]}")
    print(f"{len(os.sched_getaffinity(0))} CPUs available; load average {os.getloadavg()[0]:.1f}")
    if args.warm_only:
        cache = Path(os.environ.get("WORKBENCH_CACHE_DIR", ROOT / ".cache" / "dev"))
        for path in chosen:
            print(f"{path.name:32s} warm {run(path, cache):7.1f} s   (load {os.getloadavg()[0]:.1f})", flush=True)
        return
    print(f"{'notebook':32s} {'cold s':>8s} {'warm s':>8s} {'warm/cold':>9s}  load average after")
    for path in chosen:
        with tempfile.TemporaryDirectory(prefix="nb-cache-") as tmp:
            cold = run(path, Path(tmp))
            warm = run(path, Path(tmp))
        print(f"{path.name:32s} {cold:8.1f} {warm:8.1f} {warm / cold:9.2f}  {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
