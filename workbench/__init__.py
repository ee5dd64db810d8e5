"""workbench: measure chunking, retrieval, reranking, routing and cost choices for LLM apps.

`import workbench` stays light: heavy libraries load inside the functions that use them.
"""

from __future__ import annotations

from .config import PipelineConfig, load_config, save_config
from .datasets import Dataset, load_dataset
from .types import Answer, Chunk, Document, Hit, Span, Usage

__all__ = [
    "Answer",
    "Chunk",
    "Dataset",
    "Document",
    "Hit",
    "PipelineConfig",
    "Span",
    "Usage",
    "load_config",
    "load_dataset",
    "save_config",
    "run_experiment",
]

__version__ = "0.1.0"


def run_experiment(*args, **kwargs):  # noqa: ANN002, ANN003 - a lazy re-export
    """See `workbench.experiment.run_experiment` (imported lazily to keep this import light)."""
    from .experiment import run_experiment as run

    return run(*args, **kwargs)
