"""Sweeps: grid or random search over config fields, resumable through the run store.

A trial is one `PipelineConfig` on one dataset. Before anything runs, every trial is looked up
in the store by (config hash, dataset fingerprint); only the missing ones are computed, so a
killed sweep restarted with the same arguments picks up where it stopped, and an immediate
rerun computes nothing. Each finished trial is stored at once, in its own transaction.

Trials run in this process, in a pool of local processes, or as Ray tasks (`executor="ray"`:
a local Ray instance, or an existing cluster through `ray_address`; see `workbench.executors`). Parallel trials share
the embedding cache (SQLite in WAL mode); to keep two workers from embedding the same chunks
at once, the first trial of each (chunking, embedding) group runs before the rest of its group.
"""

from __future__ import annotations

from .run import SweepPlan, SweepRefused, SweepResult, Trial, plan_sweep, sweep
from .space import SweepSettings, SweepSpec, expand_space, load_sweep_spec

__all__ = [
    "SweepSettings",
    "SweepSpec",
    "SweepPlan",
    "SweepRefused",
    "Trial",
    "SweepResult",
    "expand_space",
    "plan_sweep",
    "sweep",
    "load_sweep_spec",
]
