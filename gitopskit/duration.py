"""Go's duration syntax (what Flux and Kubernetes objects use: ``1m30s``, ``500ms``, ``1.5h``), validated."""

from __future__ import annotations

import math
import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")


def parse_go_duration(text: object, *, positive: bool = True) -> float:
    """Seconds in ``text`` (e.g. ``5m``, ``1h30m``); ValueError naming the value when it is not a valid Go
    duration, or (with ``positive``) not above zero. ASCII digits only; no sign (a negative interval is never
    meant)."""
    if text == "0" and not positive:
        return 0.0
    pos, total = 0, 0.0
    if isinstance(text, str):
        for m in _PART.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
    if not isinstance(text, str) or pos == 0 or pos != len(text):
        raise ValueError(f"invalid duration {text!r} (use Go's syntax, e.g. 30s, 5m, 1h30m)")
    if not math.isfinite(total) or (positive and total <= 0):
        raise ValueError(f"duration {text!r} must be above zero")
    return total
