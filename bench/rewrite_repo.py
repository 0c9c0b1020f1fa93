"""Rewrite a 5,000-file config repo with 500 affected files (target < 1 s, >= 10x the naive way).

Baseline, measured in the same run: what most tools do — a ruamel.yaml round-trip load and
dump of every file (which also mangles formatting; we count only its time).

    python -m bench.rewrite_repo
"""

from __future__ import annotations

import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from ruamel.yaml import YAML

from imagebot import refs
from imagebot.update import EditRequest, walk

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: svc-{i}
  labels:
    app: svc-{i}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: svc-{i}
  template:
    metadata:
      labels:
        app: svc-{i}
    spec:
      containers:
      - name: main
        image: {image} # {marker}
        ports:
        - containerPort: 8080
        resources:
          limits: {{cpu: 500m, memory: 256Mi}}
      - name: sidecar
        image: registry.internal/tools/proxy:2.1.0
"""


def make_repo(root: Path, files: int = 5000, affected: int = 500) -> None:
    step = files // affected
    for i in range(files):
        d = root / f"apps/team-{i % 50}"
        d.mkdir(parents=True, exist_ok=True)
        if i % step == 0:
            text = DEPLOY.format(i=i, image="ghcr.io/org/app:1.0.0", marker='{"$imagepolicy": "apps:app"}')
        else:
            text = DEPLOY.format(i=i, image=f"ghcr.io/org/svc-{i}:1.0.0", marker="pinned")
        (d / f"svc-{i}.yaml").write_text(text)


def naive(root: Path) -> int:
    yaml = YAML()
    n = 0
    for p in root.rglob("*.yaml"):
        data = yaml.load(p.read_text())
        buf = io.StringIO()
        yaml.dump(data, buf)
        p.write_text(buf.getvalue())
        n += 1
    return n


def run(repeat: int = 5) -> dict[str, float]:
    request = EditRequest(policies={"apps:app": refs.parse("ghcr.io/org/app:1.1.0")})
    back = EditRequest(policies={"apps:app": refs.parse("ghcr.io/org/app:1.0.0")})
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        master = Path(tmp) / "master"
        make_repo(master)
        runs: dict[bool, list[float]] = {}
        for durable in (False, True):
            runs[durable] = []
            for k in range(repeat):
                t0 = time.perf_counter()
                cs = walk.plan_tree(master, request if k % 2 == 0 else back)
                written = walk.apply(master, cs, durable=durable)
                runs[durable].append(time.perf_counter() - t0)
                assert len(written) == 500, len(written)
            if repeat % 2:
                walk.apply(master, walk.plan_tree(master, back))
        copy = Path(tmp) / "naive"
        shutil.copytree(master, copy)
        t0 = time.perf_counter()
        naive(copy)
        base = time.perf_counter() - t0
    print(f"rewrite 5,000-file repo, 500 affected (median of {repeat}; target < 1 s and >= 10x the naive way)")
    print(f"  naive ruamel round-trip load/dump of every file:  {base * 1000:7.0f} ms")
    for durable, label in (
        (False, "in a git workspace (update/run; git commits durably)"),
        (True, "with fsync per file (imagebot set)"),
    ):
        med = statistics.median(runs[durable])
        spread = (max(runs[durable]) - min(runs[durable])) * 1000
        print(
            f"  imagebot, {label:<52} {med * 1000:7.0f} ms  spread {spread:4.0f} ms  {'ok' if med < 1 else 'MISSED'}"
            f"  {base / med:5.1f}x  {'ok' if base / med >= 10 else 'MISSED'}"
        )
        tag = "durable" if durable else "workspace"
        out.update({f"{tag}_s": med, f"{tag}_ratio": base / med})
    out["naive_s"] = base
    return out


if __name__ == "__main__":
    run()
