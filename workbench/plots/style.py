"""The palette every figure shares."""

from __future__ import annotations

__all__ = ["COLOURS", "COMPONENT_COLOURS"]

COLOURS = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#E45756", "#72B7B2")


COMPONENT_COLOURS = ("#4C78A8", "#F58518", "#72B7B2", "#54A24B")
