"""Durations as people write them in YAML: ``90``, ``30s``, ``15m``, ``2h``, ``1d``, ``1h30m``.

One parser for config, release specs and the CRD so that "durations accept seconds"
holds everywhere: a bare number is seconds, which lets tests and the demo compress a
trading day into a minute without a second syntax.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
# The same language as a regular expression, for the CRD's OpenAPI `pattern`.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$|^[0-9]+(\.[0-9]+)?$"


class DurationError(ValueError):
    """A duration string that does not parse."""


def parse_duration(value: str | float | int) -> float:
    """Return seconds for ``value``; raise DurationError naming the bad text."""
    if isinstance(value, bool):
        raise DurationError(f"expected a duration such as 30s, 15m or 2h, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise DurationError(f"duration must not be negative, got {value!r}")
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise DurationError(f"expected a duration such as 30s, 15m or 2h, got {value!r}")
    return total


def format_duration(seconds: float) -> str:
    """Shortest exact rendering, used when echoing a duration back to a user."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def _validate(value: object) -> float:
    try:
        return parse_duration(value)  # type: ignore[arg-type]
    except DurationError as exc:
        raise ValueError(str(exc)) from None


# A pydantic field type: accepts "15m" or 900, holds float seconds, dumps as "15m".
Duration = Annotated[
    float,
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "format": "duration", "pattern": DURATION_PATTERN,
                    "description": "seconds as a number, or a duration such as 30s, 15m, 2h, 1d"}),
]
