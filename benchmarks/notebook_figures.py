"""Export the README figure of each notebook (its cell tagged "readme-figure") as a PNG.

    .venv/bin/python benchmarks/notebook_figures.py

Reads the figures stored in the executed notebooks (run them first, e.g. `.venv/bin/jupyter
nbconvert --to notebook --execute --inplace notebooks/*.ipynb`), so each PNG is exactly the
figure the notebook shows, and writes notebooks/figures/<notebook>.png with kaleido 1.x, which
drives a local Chromium: set BROWSER_PATH=/usr/bin/chromium if kaleido does not find one.
Not part of CI. Prints the size of each PNG.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "notebooks" / "figures"
PLOTLY_JSON = "application/vnd.plotly.v1+json"


def readme_figure(path: Path):  # -> plotly.graph_objects.Figure
    """The figure output of the notebook's cell tagged "readme-figure".

    Raises:
        SystemExit: no such cell, or it has no stored figure (the notebook was not executed).
    """
    import nbformat
    import plotly.graph_objects as go

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if "readme-figure" in cell.get("metadata", {}).get("tags", []):
            for output in cell.get("outputs", []):
                if PLOTLY_JSON in output.get("data", {}):
                    return go.Figure(output["data"][PLOTLY_JSON])
            raise SystemExit(f"{path.name}: the readme-figure cell has no stored figure; execute the notebook first")
    raise SystemExit(f"{path.name}: no cell is tagged 'readme-figure'")


def main() -> None:
    import plotly.io as pio

    if "BROWSER_PATH" not in os.environ and shutil.which("chromium"):
        os.environ["BROWSER_PATH"] = shutil.which("chromium")
    FIGURES.mkdir(parents=True, exist_ok=True)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    figures = [readme_figure(p) for p in notebooks]
    paths = [FIGURES / f"{p.stem}.png" for p in notebooks]
    start = time.perf_counter()
    pio.write_images(figures, paths, width=900, height=500, scale=1)
    print(f"wrote {len(paths)} PNGs in {time.perf_counter() - start:.1f} s")
    for path in paths:
        print(f"  {path.relative_to(ROOT)}  {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
