"""build.sh shares one cache safely: a finished build is found by source hash, concurrent builds wait for each other.

No network and no Go here: the mirror is unreachable, so any attempt to build fails the test.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

BUILD_SH = Path(__file__).resolve().parent / "build.sh"


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "IMAGEBOT_APISERVER_CACHE": str(cache), "MIRROR": "http://127.0.0.1:9/debian", "REFRESH": ""}


def _finished(cache: Path, key: str, src_hash: str) -> Path:
    out = cache / key
    (out / "bin").mkdir(parents=True)
    (out / "versions.txt").write_text("etcd-server 3.5.30-2\ngolang-k8s-apiserver-dev 0.36.4-2\n")
    (out / "src-hash").write_text(src_hash + "\n")
    (out / ".done").touch()
    return out


def _src_hash() -> str:
    return subprocess.run([str(BUILD_SH), "--src-hash"], capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def test_a_finished_build_of_this_source_is_used_whichever_build_current_points_to(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    mine = _finished(cache, "1111111111111111", _src_hash())
    _finished(cache, "2222222222222222", "another-branch")  # another worktree's source, built last
    (cache / "current").symlink_to("2222222222222222")
    proc = subprocess.run([str(BUILD_SH)], capture_output=True, text=True, timeout=60, env=_env(cache))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(mine), "no rebuild of a source that is already built"
    assert os.readlink(cache / "current") == "2222222222222222", "the other branch's build is left alone"


def test_a_second_build_waits_for_the_first_and_uses_what_it_built(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a build in progress
        proc = subprocess.Popen([str(BUILD_SH)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(cache))
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None and not _in_flock(proc.pid):
                time.sleep(0.05)
            assert proc.poll() is None, f"build.sh did not wait for the lock: {proc.communicate()}"
            built = _finished(cache, "3333333333333333", _src_hash())  # what the first build produced
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "another build holds" in err
    assert out.strip() == str(built), "it used the build it waited for instead of building again"


def _in_flock(pid: int) -> bool:
    """Is build.sh (bash) running flock, i.e. at the lock?"""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return any(Path(f"/proc/{c}/comm").read_text().strip() == "flock" for c in children)
    except OSError:
        return False
