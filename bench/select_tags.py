"""Select over 100,000 synthetic tags (target < 200 ms); baseline: parsing each tag with semver.Version.

python -m bench.select_tags
"""

from __future__ import annotations

import random
import statistics
import time

import semver

from imagebot.policy import PolicyKind, PolicySpec, build


def synthetic_tags(n: int, seed: int = 1) -> list[str]:
    rnd = random.Random(seed)
    tags = []
    for i in range(n):
        r = rnd.random()
        if r < 0.6:
            tags.append(
                f"{'v' if rnd.random() < 0.2 else ''}{rnd.randint(0, 9)}.{rnd.randint(0, 50)}.{rnd.randint(0, 200)}"
                + (f"-rc.{rnd.randint(0, 9)}" if rnd.random() < 0.2 else "")
            )
        elif r < 0.8:
            tags.append(f"main-{rnd.getrandbits(28):07x}-{1700000000 + i}")
        elif r < 0.9:
            tags.append(f"sha256-{rnd.getrandbits(64):016x}.sig")
        else:
            tags.append(rnd.choice(["latest", "stable", "edge"]) + str(i))
    return tags


def timed(fn, repeat: int = 7) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), max(runs) - min(runs)


def baseline(tags: list[str]) -> None:
    """What a straightforward implementation does: semver.Version.parse every tag, then max()."""
    best = None
    for t in tags:
        try:
            v = semver.Version.parse(t[1:] if t.startswith("v") else t)
        except ValueError:
            continue
        if not v.prerelease and v.major == 1 and (best is None or v > best):
            best = v


def run() -> dict[str, float]:
    tags = synthetic_tags(100_000)
    results: dict[str, float] = {}
    specs = {
        "semver ^1": PolicySpec(PolicyKind.SEMVER, "^1"),
        "semver >=1.0.0-0 <5 || ~7.1": PolicySpec(PolicyKind.SEMVER, ">=1.0.0-0 <5 || ~7.1"),
        "numerical asc + extract": PolicySpec(PolicyKind.NUMERICAL, "asc", pattern=r"^main-[0-9a-f]+-(\d+)$", extract="$1"),
        "alphabetical desc": PolicySpec(PolicyKind.ALPHABETICAL, "desc"),
    }
    base, _ = timed(lambda: baseline(tags), repeat=3)
    print(f"select over {len(tags):,} tags (median of 7; target < 200 ms)")
    print(f"  baseline semver.Version.parse + max ^1: {base * 1000:7.1f} ms")
    for name, spec in specs.items():
        policy = build(spec)
        med, spread = timed(lambda p=policy: p.select(tags))
        results[name] = med
        verdict = "ok" if med < 0.2 else "MISSED"
        print(
            f"  {name:<32} {med * 1000:7.1f} ms  ±{spread * 500:5.1f}  {verdict}"
            + (f"  ({base / med:4.1f}x faster than baseline)" if name == "semver ^1" else "")
        )
    results["baseline"] = base
    return results


if __name__ == "__main__":
    run()
