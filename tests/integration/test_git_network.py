"""Hostile git remotes: a redirect to another origin never receives the token, and a remote that
never answers (or drips) ends in a GitError naming it, bounded by the workspace's deadline."""

from __future__ import annotations

import base64
import http.client
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gitopskit.errors import GitError
from gitopskit.workspace import GitAuth, GitLimits, Workspace
from reconciler.errors import SourceError
from reconciler.source import Source
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare
from tests.fixtures.net import QuietHandler, ThreadServer

pytestmark = pytest.mark.git

HTTP_AUTH = GitAuth(GIT_USER, GIT_PASSWORD)
SHORT = GitLimits(timeout=3.0, low_speed_limit=1000, low_speed_time=2, connect_timeout=2)


def _bounded(fn: Callable[[], object], limit: float = 60.0) -> BaseException | object:
    """Run ``fn`` in a thread; the test fails (instead of hanging) if it has not returned after ``limit``."""
    box: list[object] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as exc:
            box.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"still hanging after {limit}s: no deadline"
    return box[0]


# ------------------------------------------------------------------ redirects
class _Recorder:
    """A public remote on another origin (a proxy to the real git server that brings its own credentials),
    recording every Authorization header it receives."""

    def __init__(self, upstream_port: int) -> None:
        self.seen: list[str | None] = []
        outer = self

        class Handler(QuietHandler):
            def _relay(self) -> None:
                outer.seen.append(self.headers.get("Authorization"))
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "transfer-encoding", "authorization")}
                hdrs["Authorization"] = "Basic " + base64.b64encode(f"{GIT_USER}:{GIT_PASSWORD}".encode()).decode()
                conn.request(self.command, self.path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                keep = {
                    k: v for k, v in resp.getheaders() if k.lower() not in ("content-length", "transfer-encoding", "content-type")
                }
                self.send_body(resp.status, data, keep, resp.getheader("Content-Type") or "text/plain")
                conn.close()

            do_GET = do_POST = _relay

        self.server = ThreadServer(Handler)


def test_a_redirect_to_another_origin_is_refused_and_never_receives_the_token(git_http: GitHttp, tmp_path: Path) -> None:
    bare = make_bare(git_http.root, f"redir{os.urandom(4).hex()}", {"a.yaml": "a: 1\n"})
    recorder = _Recorder(git_http.server.port)
    target = f"http://127.0.0.1:{recorder.server.port}"

    class Redirect(QuietHandler):
        def do_GET(self) -> None:
            self.send_body(302, b"", {"Location": target + self.path}, "text/plain")

        do_POST = do_GET

    redirect = ThreadServer(Redirect)
    try:
        ws = Workspace(f"http://127.0.0.1:{redirect.port}/{bare.name}", "main", tmp_path / "c", HTTP_AUTH)
        with pytest.raises(GitError) as err:
            ws.sync()
        assert "redirect" in str(err.value).lower(), err.value
        assert GIT_PASSWORD not in str(err.value)
        assert not any(recorder.seen), "the other origin never receives the Authorization header"
        # the other origin is a working remote: only the redirect is refused
        assert Workspace(target + f"/{bare.name}", "main", tmp_path / "d").sync()
    finally:
        redirect.stop()
        recorder.server.stop()


# ------------------------------------------------------------------ deadlines
class _Silent:
    """Accepts TCP connections and then says nothing (or, with ``drip``, sends a byte now and then)."""

    def __init__(self, drip: bytes | None = None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.drip = drip
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            if self.drip is not None:
                threading.Thread(target=self._drip, args=(c,), daemon=True).start()

    def _drip(self, c: socket.socket) -> None:
        assert self.drip is not None
        try:
            c.recv(65536)
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\nContent-Length: 100000\r\n\r\n"
            )
            c.sendall(head)
            while not self.stop.wait(0.5):
                c.sendall(self.drip)
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[_Silent]:
    s = _Silent()
    yield s
    s.close()


@pytest.fixture
def dripping() -> Iterator[_Silent]:
    s = _Silent(drip=b"0")
    yield s
    s.close()


@pytest.mark.parametrize("scheme", ["http", "ssh"], ids=["https-remote", "ssh-remote"])
def test_a_remote_that_never_answers_ends_in_a_git_error_naming_it(silent: _Silent, scheme: str, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{silent.port}/r.git" if scheme == "http" else f"ssh://git@127.0.0.1:{silent.port}/r.git"
    auth = HTTP_AUTH if scheme == "http" else GitAuth(known_hosts=tmp_path / "known_hosts")
    ws = Workspace(url, "main", tmp_path / "c", auth, limits=SHORT)
    for op in (ws.sync, lambda: ws.remote_sha("main")):
        started = time.monotonic()
        err = _bounded(op)
        assert isinstance(err, GitError), err
        assert f"127.0.0.1:{silent.port}" in str(err)
        assert "timed out" in str(err) or "too slow" in str(err)
        assert time.monotonic() - started < 60


def test_a_remote_that_drips_ends_in_a_git_error(dripping: _Silent, tmp_path: Path) -> None:
    ws = Workspace(f"http://127.0.0.1:{dripping.port}/r.git", "main", tmp_path / "c", HTTP_AUTH, limits=SHORT)
    err = _bounded(lambda: ws.remote_sha("main"))
    assert isinstance(err, GitError), err
    assert "timed out" in str(err) or "too slow" in str(err)


def test_the_reconcilers_source_fetch_has_the_same_deadline(
    silent: _Silent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITOPSKIT_GIT_TIMEOUT", "3")
    src = Source(f"http://127.0.0.1:{silent.port}/r.git", "main", cache=tmp_path / "c")
    err = _bounded(src.fetch)
    assert isinstance(err, SourceError), err
    assert f"127.0.0.1:{silent.port}" in str(err)


@pytest.mark.parametrize("scheme", ["http", "ssh"], ids=["https-remote", "ssh-remote"])
def test_the_overall_deadline_kills_git_and_its_helpers_when_the_stall_limits_would_wait_longer(
    silent: _Silent, scheme: str, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{silent.port}/r.git" if scheme == "http" else f"ssh://git@127.0.0.1:{silent.port}/r.git"
    auth = HTTP_AUTH if scheme == "http" else GitAuth(known_hosts=tmp_path / "known_hosts")
    patient = GitLimits(timeout=2.0, low_speed_time=600, connect_timeout=600)
    ws = Workspace(url, "main", tmp_path / "c", auth, limits=patient)
    err = _bounded(lambda: ws.remote_sha("main"))
    assert isinstance(err, GitError), err
    assert f"git clone {url.replace('git@', '***@')} timed out after 2s" in str(err)
    assert not (tmp_path / "c").exists() or not any(p.name.endswith(".tmp") for p in (tmp_path / "c").iterdir())


def _processes_naming(text: str) -> list[str]:
    """The command lines of live processes that contain ``text`` (a zombie's is empty: it holds nothing)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(cmd)
    return found


@pytest.mark.parametrize("runner", ["_run", "_bytes"], ids=["command", "plumbing"])
def test_a_command_past_its_deadline_leaves_no_git_helper_behind(silent: _Silent, runner: str, tmp_path: Path) -> None:
    """Both ways the workspace runs git share the process-group kill: killing git alone left its git-remote-http
    child talking to the silent remote (until curl's low-speed limit, here 10 minutes), holding our pipes too."""
    url = f"http://127.0.0.1:{silent.port}/r.git"
    patient = GitLimits(timeout=2.0, low_speed_time=600, connect_timeout=600)
    ws = Workspace(url, "main", tmp_path / "c", HTTP_AUTH, limits=patient)
    ws.dir.mkdir(parents=True)
    err = _bounded(lambda: getattr(ws, runner)(["ls-remote", "--", url], *(() if runner == "_bytes" else (ws.dir,))))
    assert isinstance(err, GitError), err
    assert "timed out after 2s" in str(err)
    end = time.monotonic() + 10  # SIGKILL is immediate; the bound only absorbs a loaded machine's scheduling
    while _processes_naming(f"127.0.0.1:{silent.port}") and time.monotonic() < end:
        time.sleep(0.1)
    assert _processes_naming(f"127.0.0.1:{silent.port}") == []
