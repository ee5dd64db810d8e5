"""Agent metrics, pure functions over plain values: pass^k and pass@k, tool-call accuracy, trajectory match.

Calls are compared as `(name, arguments)` pairs (ToolCall or anything with `.name` and
`.arguments`). pass^k follows tau-bench (the chance that k trials drawn from n all succeed,
C(c, k) / C(n, k)); pass@k is the HumanEval estimator 1 - C(n - c, k) / C(n, k).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np

__all__ = [
    "ArgumentRule", "TrajectoryMode", "pass_hat_k", "pass_at_k", "mean_pass_hat_k", "mean_pass_at_k",
    "arguments_match", "call_matches", "tool_call_accuracy", "tool_name_accuracy", "trajectory_match",
    "invalid_call_rate", "percentile",
]

ArgumentRule = Literal["exact", "subset", "name_only"]
TrajectoryMode = Literal["strict", "unordered", "subset", "superset"]


class _Call(Protocol):
    name: str
    arguments: Mapping[str, Any]


def _check_k(n: int, c: int, k: int) -> None:
    if not 0 <= c <= n:
        raise ValueError(f"successes c={c} must be between 0 and trials n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and the number of trials n={n}; run more trials")


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Probability that k of the n trials, drawn without replacement, all succeed (c succeeded)."""
    _check_k(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k trials drawn from n succeeds (c succeeded)."""
    _check_k(n, c, k)
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _per_task(outcomes: Mapping[str, Sequence[bool]], k: int, fn: Any) -> float:
    if not outcomes:
        raise ValueError("no tasks: pass a mapping of task id -> trial outcomes")
    return float(np.mean([fn(len(v), sum(map(bool, v)), k) for v in outcomes.values()]))


def mean_pass_hat_k(outcomes: Mapping[str, Sequence[bool]], k: int) -> float:
    """pass^k averaged over tasks (task id -> the success of each trial)."""
    return _per_task(outcomes, k, pass_hat_k)


def mean_pass_at_k(outcomes: Mapping[str, Sequence[bool]], k: int) -> float:
    """pass@k averaged over tasks."""
    return _per_task(outcomes, k, pass_at_k)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def arguments_match(predicted: Mapping[str, Any], reference: Mapping[str, Any], rule: ArgumentRule = "exact") -> bool:
    """Whether a call's arguments are right under `rule`.

    "exact": the same keys and values; "subset": every reference argument present with its
    value (extra predicted arguments allowed); "name_only": any arguments.
    """
    if rule == "name_only":
        return True
    if rule == "exact":
        return _canonical(dict(predicted)) == _canonical(dict(reference))
    if rule == "subset":
        return all(k in predicted and _canonical(predicted[k]) == _canonical(v) for k, v in reference.items())
    raise ValueError(f"unknown argument rule {rule!r}; choose one of ['exact', 'subset', 'name_only']")


def call_matches(predicted: _Call, reference: _Call, rules: Mapping[str, ArgumentRule] | None = None) -> bool:
    """Same tool, and arguments right under that tool's rule (default "exact")."""
    return predicted.name == reference.name and arguments_match(
        predicted.arguments, reference.arguments, (rules or {}).get(reference.name, "exact"))


def _matched(predicted: Sequence[_Call], reference: Sequence[_Call], same: Any) -> int:
    """How many predicted calls pair one-to-one with a reference call (greedy, in order)."""
    free = list(reference)
    count = 0
    for call in predicted:
        for i, ref in enumerate(free):
            if same(call, ref):
                del free[i]
                count += 1
                break
    return count


def tool_call_accuracy(predicted: Sequence[_Call], reference: Sequence[_Call],
                       rules: Mapping[str, ArgumentRule] | None = None) -> float:
    """Share of calls that are right: one-to-one matches over the longer of the two sequences.

    A missing call and an extra call both cost; order does not (see `trajectory_match`).
    Two empty sequences score 1.
    """
    longest = max(len(predicted), len(reference))
    if longest == 0:
        return 1.0
    return _matched(predicted, reference, lambda p, r: call_matches(p, r, rules)) / longest


def tool_name_accuracy(predicted: Sequence[_Call], reference: Sequence[_Call]) -> float:
    """`tool_call_accuracy` judging only the tool chosen, not its arguments."""
    longest = max(len(predicted), len(reference))
    return 1.0 if longest == 0 else _matched(predicted, reference, lambda p, r: p.name == r.name) / longest


def trajectory_match(predicted: Sequence[_Call], reference: Sequence[_Call], mode: TrajectoryMode = "strict",
                     rules: Mapping[str, ArgumentRule] | None = None) -> bool:
    """Whether the predicted calls match the reference trajectory.

    "strict": the same calls in the same order; "unordered": the same calls in any order;
    "subset": every predicted call is in the reference (nothing extra); "superset": every
    reference call was made (extras allowed).
    """
    same = lambda p, r: call_matches(p, r, rules)  # noqa: E731
    if mode == "strict":
        return len(predicted) == len(reference) and all(same(p, r) for p, r in zip(predicted, reference))
    matched = _matched(predicted, reference, same)
    if mode == "unordered":
        return matched == len(predicted) == len(reference)
    if mode == "subset":
        return matched == len(predicted)
    if mode == "superset":
        return matched == len(reference)
    raise ValueError(f"unknown trajectory mode {mode!r}; choose one of ['strict', 'unordered', 'subset', 'superset']")


def invalid_call_rate(invalid: int, total: int) -> float:
    """Invalid calls (malformed output, unknown tool, schema failure) per call attempted; 0 with no calls."""
    if invalid < 0 or total < invalid:
        raise ValueError(f"invalid={invalid} must be between 0 and total={total}")
    return invalid / total if total else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100, linear interpolation); NaN for no values."""
    return float(np.percentile(values, q)) if len(values) else float("nan")

