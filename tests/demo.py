"""`make demo`: the main job on local embedded parts, narrated with timings.

It grows with the project: today it runs what works end to end — tag selection under the three
policy kinds, and the real test Kubernetes API server started, applied to and stopped.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imagebot.cli import main as imagebot

TAGS = ["1.0.0", "1.1.0", "1.2.0-rc.1", "v1.1.1", "2.0.0", "latest", "sha256-abc.sig"]
ROOT = Path(__file__).resolve().parent.parent


def step(rows: list[tuple[str, str, float]], name: str, fn) -> None:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    what = fn()
    rows.append((name, what, time.perf_counter() - t0))
    print(f"  {name}: {what}")


def select(*flags: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    code = imagebot(["select", *flags, *TAGS], out=out, err=err)
    if code != 0:
        raise SystemExit(f"demo failed: imagebot select {' '.join(flags)} exited {code}: {err.getvalue()}")
    return out.getvalue().strip()


def cluster_roundtrip() -> str:
    with tempfile.TemporaryDirectory(prefix="imagebot-demo-") as run:
        up = subprocess.run([str(ROOT / "tests/cluster/cluster.sh"), "up", run], capture_output=True, text=True)
        if up.returncode != 0:
            raise SystemExit(f"demo failed: test apiserver did not start:\n{up.stderr}")
        kc = up.stdout.strip()
        try:
            manifest = (
                '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"app","namespace":"default"},'
                '"spec":{"selector":{"matchLabels":{"app":"app"}},"template":{"metadata":{"labels":{"app":"app"}},'
                '"spec":{"containers":[{"name":"app","image":"demo/app:1.0.0"}]}}}}'
            )
            subprocess.run(
                ["kubectl", "--kubeconfig", kc, "apply", "--server-side", "-f", "-"],
                input=manifest,
                text=True,
                check=True,
                capture_output=True,
            )
            image = subprocess.run(
                [
                    "kubectl",
                    "--kubeconfig",
                    kc,
                    "get",
                    "deploy",
                    "app",
                    "-o",
                    "jsonpath={.spec.template.spec.containers[0].image}",
                ],
                text=True,
                check=True,
                capture_output=True,
            ).stdout
        finally:
            subprocess.run([str(ROOT / "tests/cluster/cluster.sh"), "down", run], capture_output=True)
        return f"apiserver up, Deployment applied server-side with image {image}, stopped"


def main() -> int:
    rows: list[tuple[str, str, float]] = []
    print(f"tags in the registry: {' '.join(TAGS)}")
    step(rows, "prod  (semver ^1)", lambda: select("--semver", "^1"))
    step(rows, "dev   (semver >=1.0.0-0 <2)", lambda: select("--semver", ">=1.0.0-0 <2"))
    step(rows, "highest major (numerical)", lambda: select("--numerical", "asc", "--pattern", r"^(\d+)\.", "--extract", "$1"))
    step(rows, "test cluster", cluster_roundtrip)
    print("\nstep                            took")
    for name, _, secs in rows:
        print(f"{name:<30}  {secs * 1000:8.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
