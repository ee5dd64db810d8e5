"""Checks every config field shares: types, finite numbers in declared ranges, safe regexes, short messages.

A numeric config field declares its valid range where it is defined (`number(default, ge=...)`);
`check_fields` enforces the type of every field, finiteness and range of every number (tuple
elements included) and the integer cap, so no config can carry NaN, infinity or a size no
widget, index or allocator can hold. Messages cut long values with `shorten`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ConfigError",
    "MAX_INT",
    "REGEX_TIMEOUT_S",
    "MAX_PATTERN_CHARS",
    "Bounds",
    "number",
    "text",
    "MAX_NAME_CHARS",
    "bounds_of",
    "check_fields",
    "check_token_pattern",
    "shorten",
]

MAX_INT = 2**31 - 1  # the largest count any config field takes (C int; far below 2^53)
REGEX_TIMEOUT_S = 0.2  # a token pattern that needs longer than this on a probe string is refused
MAX_PATTERN_CHARS = 1000
MAX_NAME_CHARS = 4096  # a model name, path or URL (Linux's PATH_MAX): anything longer names nothing
_SHORT = 80


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the value and the fix."""


def shorten(value: Any, limit: int = _SHORT) -> str:
    """`repr(value)`, cut to its first `limit` characters plus "... (N characters)" when longer.

    Every config message shows values through this, so a 10 MB model name gives a short error.
    """
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


@dataclass(frozen=True)
class Bounds:
    """A closed or open interval; None on a side means unbounded (integers: up to `MAX_INT`)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def contains(self, value: float) -> bool:
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )

    def describe(self) -> str:
        """The interval in math notation, e.g. "[0, 1]" or "(0, inf)"."""
        lo = f"[{_fmt(self.ge)}" if self.ge is not None else f"({_fmt(self.gt)}" if self.gt is not None else "(-inf"
        hi = f"{_fmt(self.le)}]" if self.le is not None else f"{_fmt(self.lt)})" if self.lt is not None else "inf)"
        return f"{lo}, {hi}"


def _fmt(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


def number(default: float, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None, hint: str = "") -> Any:
    """A dataclass field holding a number in the given range; `hint` is added to its error message."""
    return dataclasses.field(default=default, metadata={"bounds": Bounds(ge=ge, gt=gt, le=le, lt=lt), "hint": hint})


def text(default: str, *, max_chars: int = MAX_NAME_CHARS) -> Any:
    """A dataclass field holding a name, path or URL of at most `max_chars` characters."""
    return dataclasses.field(default=default, metadata={"max_chars": max_chars})


def bounds_of(cls: type, name: str) -> Bounds:
    """The declared range of numeric field `name` of config class `cls` (integers capped at `MAX_INT`)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]  # type: ignore[arg-type]
    declared: Bounds = f.metadata.get("bounds", Bounds())
    if _hints(cls)[name] is int and declared.le is None and declared.lt is None:
        declared = dataclasses.replace(declared, le=MAX_INT)
    return declared


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(config: Any, section: str) -> None:
    """Check the type of every field of `config` and the range of every number.

    Raises:
        ConfigError: naming the field (`section.name`), the bad value and what is valid.
    """
    cls = type(config)
    for f in dataclasses.fields(cls):
        hint, value = _hints(cls)[f.name], getattr(config, f.name)
        path = f"{section}.{f.name}" if section else f.name
        if typing.get_origin(hint) is tuple:
            (element,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
            if not isinstance(value, tuple):
                raise ConfigError(f"{path} must be a list, got {shorten(value)}")
            for i, item in enumerate(value):
                _check_value(element, item, f"{path}[{i}]", None, "")
                _check_length(item, f"{path}[{i}]", f.metadata.get("max_chars"))
        elif dataclasses.is_dataclass(hint) or typing.get_origin(hint) is Literal:
            continue  # sections check themselves; a Literal is checked against its options
        else:
            bounds = bounds_of(cls, f.name) if hint in (int, float) else None
            _check_value(hint, value, path, bounds, f.metadata.get("hint", ""))
            _check_length(value, path, f.metadata.get("max_chars"))


def _check_length(value: Any, path: str, max_chars: int | None) -> None:
    if max_chars is not None and isinstance(value, str) and len(value) > max_chars:
        raise ConfigError(
            f"{path}={shorten(value)} is longer than {max_chars:,} characters; no model name, path or URL is"
        )


def _check_value(hint: Any, value: Any, path: str, bounds: Bounds | None, hint_text: str) -> None:
    if hint not in (int, float, str, bool):
        return
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) < 2**1023 else math.copysign(math.inf, value)
    if isinstance(value, bool) and hint is not bool or not isinstance(value, hint):
        raise ConfigError(f"{path} must be {hint.__name__}, got {shorten(value)}")
    if hint is float and not math.isfinite(value):
        valid = f"; it must lie in {bounds.describe()}" if bounds else ""
        raise ConfigError(f"{path}={value} is not a finite number{valid}")
    if bounds is None and hint is int:
        bounds = Bounds(le=MAX_INT)
    if bounds is not None and hint in (int, float) and not bounds.contains(value):
        suffix = f"; {hint_text}" if hint_text else ""
        if bounds.gt == 0 and bounds.ge is None and value <= 0:
            raise ConfigError(f"{path} must be positive, got {shorten(value)} (valid: {bounds.describe()}){suffix}")
        raise ConfigError(f"{path}={shorten(value)} must lie in {bounds.describe()}{suffix}")


# Strings a backtracking pattern chokes on, and ones on which a pattern that can match nothing shows it.
_PROBES = (
    "a" * 40 + "!",
    "a" * 3000 + "!",
    "ab " * 1000 + "!",
    " " * 3000,
    "x1_y-2 can't ä 東京 éé, (b) " * 100,
    "\n\t." * 1000,
)


@functools.lru_cache(maxsize=64)
def check_token_pattern(pattern: str, name: str = "retrieval.token_pattern") -> None:
    """Refuse a token regex that does not compile, matches the empty string or backtracks badly.

    Compiled with the `regex` module; each probe string must be tokenised within
    `REGEX_TIMEOUT_S` seconds (the tokenizer applies a timeout too, so a run never hangs).

    Raises:
        ConfigError: naming the pattern and the fix.
    """
    import regex

    fix = r"the default is r'(?u)\b\w+\b'"
    if len(pattern) > MAX_PATTERN_CHARS:  # compiling megabytes of pattern takes minutes
        raise ConfigError(f"{name}={shorten(pattern)} is longer than {MAX_PATTERN_CHARS:,} characters; {fix}")
    try:
        compiled = regex.compile(pattern)
    except (regex.error, ValueError, OverflowError) as exc:
        raise ConfigError(f"{name}={shorten(pattern)} is not a valid regular expression ({exc}); {fix}") from None
    # runs of the pattern's own letters too: `(x+x+)+y` only backtracks on x's
    letters = sorted({c for c in pattern if c.isalnum()})[:12]
    for probe in ("", *_PROBES, *(c * 40 + "\x00" for c in letters)):
        try:
            empty = any(not m.group() for m in compiled.finditer(probe, timeout=REGEX_TIMEOUT_S))
        except TimeoutError:
            raise ConfigError(
                f"{name}={shorten(pattern)} takes over {REGEX_TIMEOUT_S} s on a {len(probe):,}-character probe "
                f"string (catastrophic backtracking); simplify it, e.g. drop nested quantifiers; {fix}"
            ) from None
        if empty:
            raise ConfigError(
                f"{name}={shorten(pattern)} matches the empty string, so it would produce empty terms; "
                f"require at least one character (+ rather than *); {fix}"
            )
