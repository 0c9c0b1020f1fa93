"""Resource bombs from a repository anyone can commit to: alias bombs in the configuration, deep
nesting in manifests, oversized files — refused with a clear message, in bounded memory.

Each hostile run is a subprocess under an address-space cap (generous: ~10x what a refusal needs);
its peak RSS is read with ``resource.getrusage``. No timing assertions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from imagebot.config import yamlload
from imagebot.update import yamlscan

CAP_BYTES = 1536 << 20  # RLIMIT_AS of the child: the old code needed gigabytes here
PEAK_RSS_MB = 400


def _run_capped(*argv: str, cwd: Path) -> tuple[int, str, float]:
    """Run ``imagebot ARGV`` under the cap; returns exit code, stderr and the child's peak RSS in MB."""
    child = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({CAP_BYTES}, {CAP_BYTES}))
        from imagebot.cli import main
        code = main({list(argv)!r})
        sys.stdout.flush(); sys.stderr.flush()
        sys.exit(code)
    """)
    probe = textwrap.dedent(f"""
        import json, resource, subprocess, sys
        p = subprocess.run([sys.executable, "-c", {child!r}], capture_output=True, text=True, timeout=300)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(json.dumps({{"code": p.returncode, "err": p.stderr, "peak": peak}}))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=330, cwd=cwd, check=True)
    result = json.loads(out.stdout)
    return result["code"], result["err"], result["peak"]


def _alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


CONFIG_HEAD = """apiVersion: imagebot.dev/v1
kind: Config
stateFile: state.db
git: [{name: c, url: "https://example.com/c.git"}]
"""


def test_an_alias_bomb_in_the_config_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        CONFIG_HEAD
        + "x-bomb:\n"
        + textwrap.indent(_alias_bomb(), "  ")
        + "images:\n  - name: app\n    repository: *a8\n    environments: {prod: {policy: {semver: ^1}, target: {git: c}}}\n"
    )
    code, err, peak = _run_capped("config", "validate", str(bomb), cwd=tmp_path)
    assert code == 2, err
    assert "aliases expand to more than 250,000 nodes (an alias bomb?): refused" in err
    assert "Traceback" not in err
    assert peak < PEAK_RSS_MB, f"peak RSS {peak:.0f} MB"


def test_a_deeply_nested_config_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text(CONFIG_HEAD + "images: " + "[" * 5000 + "]" * 5000 + "\n")
    code, err, peak = _run_capped("config", "validate", str(deep), cwd=tmp_path)
    assert code == 2 and f"nested more than {yamlload.MAX_DEPTH} levels deep: refused" in err, err
    assert peak < PEAK_RSS_MB


def test_a_config_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(CONFIG_HEAD + "# padding\n" * (yamlload.MAX_BYTES // 10 + 1))
    code, err, _ = _run_capped("config", "validate", str(big), cwd=tmp_path)
    assert code == 2 and f"larger than the limit of {yamlload.MAX_BYTES:,} bytes: refused" in err, err


def test_a_deeply_nested_manifest_is_refused_and_the_rest_of_the_tree_is_edited(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    depth = 200_000  # 400 KB: the old scanner was killed by the kernel at 24 GB on this
    (tree / "deep.yaml").write_text("image: ghcr.io/acme/app:1.0.0\nx: " + "[" * depth + "]" * depth + "\n")
    (tree / "ok.yaml").write_text("image: ghcr.io/acme/app:1.0.0\n")
    code, err, peak = _run_capped("set", str(tree), "--image", "ghcr.io/acme/app=ghcr.io/acme/app:1.1.0", cwd=tmp_path)
    assert code == 0, err
    assert f"deep.yaml:2: parse: refused (line 2): nested more than {yamlscan.MAX_DEPTH} levels deep" in err
    assert "Traceback" not in err
    assert (tree / "ok.yaml").read_text() == "image: ghcr.io/acme/app:1.1.0\n"
    assert peak < PEAK_RSS_MB, f"peak RSS {peak:.0f} MB"


def test_a_manifest_over_the_size_limit_is_reported_not_read_whole(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "big.yaml").write_text("image: ghcr.io/acme/app:1.0.0\n" + "# pad\n" * (yamlscan.MAX_BYTES // 6 + 1))
    code, err, _ = _run_capped("set", str(tree), "--image", "ghcr.io/acme/app=ghcr.io/acme/app:1.1.0", cwd=tmp_path)
    assert code == 1, err  # the only file naming the image was not scanned: it matched nothing
    assert f"big.yaml: io: larger than the limit of {yamlscan.MAX_BYTES:,} bytes: not scanned" in err, err
    assert (tree / "big.yaml").read_text().startswith("image: ghcr.io/acme/app:1.0.0\n")
    with pytest.raises(yamlscan.YamlLimitError, match="larger than the limit"):
        yamlscan.scan("a: 1\n" + " " * yamlscan.MAX_BYTES)


def _peak_scan_bytes(text: str) -> int:
    tracemalloc.start()
    try:
        result = yamlscan.scan(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(result.scalars) == 3000
    return peak


def test_scanner_memory_grows_with_the_text_not_with_depth_times_scalars() -> None:
    """3,000 scalars at depth 95 cost about what they cost at depth 5: paths are shared links."""
    shallow = "[" * 5 + ", ".join(["1"] * 3000) + "]" * 5
    deep = "[" * 95 + ", ".join(["1"] * 3000) + "]" * 95
    assert _peak_scan_bytes(deep) < 1.5 * _peak_scan_bytes(shallow)
    assert yamlscan.scan(deep).scalars[-1].path == (0,) * 94 + (2999,)
