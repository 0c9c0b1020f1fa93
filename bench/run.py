"""Run every benchmark on local real parts and write bench/RESULTS.md and bench/results.json.

    python -m bench          (or: make bench)

Each figure is printed with the baseline or peer measured in the same run; a missed target or a
peer that could not run is said plainly in the report.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

SUITES: list[tuple[str, str, str]] = [
    ("select", "bench.select_tags", "run"),
    ("P2 rewrite", "bench.rewrite_repo", "run"),
    ("scan + P7 memory", "bench.scan_registry", "all_figures"),
    ("P1 Renovate + cold run --once", "bench.renovate_peer", "run"),
    ("P18 discovery vs Renovate", "bench.discover_peer", "run"),
    ("P3 webhook", "bench.webhook_latency", "run"),
    ("git delivery", "bench.git_delivery", "main"),
    ("P4-P6 reconcile", "bench.reconcile", "run"),
    ("D1-D2 dashboard in Chromium", "bench.dashboard", "run"),
]


def machine() -> str:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")),
        platform.processor(),
    )
    mem = next((ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")), "?")
    gib = int(mem) // 1024 // 1024 if mem.isdigit() else "?"
    return f"{platform.platform()}, {os.cpu_count()} cores ({cpu}), {gib} GiB, Python {platform.python_version()}"


def main() -> int:
    results: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "suites": {}}
    lines = [
        f"# Benchmark results\n\nMachine: {results['machine']}  \nDate: {results['date']}  \n"
        f"Reproduce: `make bench` (or `python -m bench`).\n"
    ]
    for title, module, fn in SUITES:
        print(f"\n## {title}", flush=True)
        buf = io.StringIO()
        t0 = time.perf_counter()
        try:
            mod = __import__(module, fromlist=[fn])
            func: Callable[[], Any] = getattr(mod, fn)
            with contextlib.redirect_stdout(buf):
                figures = func()
            status = "ok"
        except Exception as exc:
            figures = {"error": f"{type(exc).__name__}: {exc}"}
            buf.write(traceback.format_exc())
            status = "FAILED"
        took = time.perf_counter() - t0
        text = buf.getvalue()
        print(text, end="", flush=True)
        results["suites"][title] = {"status": status, "seconds": round(took, 1), "figures": figures}
        lines.append(f"\n## {title} ({status}, {took:.0f} s)\n\n```\n{text.strip()}\n```\n")
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (HERE / "RESULTS.md").write_text("".join(lines))
    print(f"\nwrote {HERE / 'RESULTS.md'} and {HERE / 'results.json'}")
    return 0 if all(s["status"] == "ok" for s in results["suites"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
