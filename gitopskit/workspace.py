"""A cached, shallow Git workspace of one remote branch (GitPython), with safe credentials.

- Cloned shallow and single-branch into ``<cache>/<hash of URL + branch>``; later runs fetch
  and hard-reset to the remote tip (and ``clean -fdx``), so a workspace left dirty by a crash is
  cleaned. A corrupt cache directory is removed and cloned again.
- HTTPS credentials travel as an ``http.extraHeader`` through git's environment
  (``GIT_CONFIG_COUNT``…), never in the URL, the ``.git/config`` or a log line. git sends that
  header on every request of a command, also to wherever a redirect led, so an authenticated
  remote is never followed through a redirect (``http.followRedirects=false``): a redirect is a
  GitError naming the URL to configure instead.
- Every git command has deadlines (:class:`GitLimits`): an overall one (the whole process group
  is killed when it passes), a low-speed limit for HTTP and connect / keepalive limits for SSH,
  so a remote that never answers, or drips, is a GitError naming it — never a hang.
- SSH uses a deploy key with ``IdentitiesOnly=yes``, ``BatchMode=yes`` and strict host key
  checking against a given known_hosts: an unknown host key is an error, not a prompt.
- Commits carry the configured identity (a bot identity by default, so a bare machine with no
  git identity works) and are signed when a signing key is configured (SSH or GPG, through
  git's own ``gpg.format`` / ``user.signingkey``).
- Every git failure becomes a GitError with credentials redacted.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gitopskit import openpgp
from gitopskit.errors import GitError, GitFailure
from gitopskit.openpgp import OpenPGPKey

if TYPE_CHECKING:
    from gitopskit.fluxsecrets import GitCredentials

log = logging.getLogger(__name__)

_USERINFO = re.compile(r"(\w+://)[^/@\s]+@")
_AUTH_HEADER = re.compile(r"(?i)(authorization:\s*\w+\s+)\S+")


def redact(text: str) -> str:
    return _AUTH_HEADER.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


def safe_url(url: str) -> str:
    return _USERINFO.sub(r"\1***@", url)


def _control_dir() -> str | None:
    """A private directory for SSH control sockets (short path: sockets are limited to ~100 bytes)."""
    path = Path(f"/tmp/imagebot-ssh-{os.getuid()}")
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None  # not ours, or not private: do without multiplexing
    except OSError:
        return None
    return str(path)


def _env_seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "")
    try:
        value = float(text) if text else default
    except ValueError:
        value = default
    return value if value > 0 else default


@dataclass(frozen=True, slots=True)
class GitLimits:
    """Deadlines of every git command. ``timeout`` bounds each command as a whole (the default comes from
    ``$GITOPSKIT_GIT_TIMEOUT``, seconds); the rest bound a connection that stalls: HTTP transfers slower
    than ``low_speed_limit`` bytes/s for ``low_speed_time`` s, SSH connects and silent SSH peers."""

    timeout: float = field(default_factory=lambda: _env_seconds("GITOPSKIT_GIT_TIMEOUT", 300.0))
    low_speed_limit: int = 1000
    low_speed_time: int = 30
    connect_timeout: int = 10

    def __post_init__(self) -> None:
        if not (self.timeout > 0 and self.low_speed_limit > 0 and self.low_speed_time > 0 and self.connect_timeout > 0):
            raise ValueError(f"git limits must be positive: {self}")


@dataclass(frozen=True, slots=True)
class GitAuth:
    """How to reach the remote. Secrets never appear in ``repr``."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)  # an HTTPS token or password
    ssh_key: Path | None = None
    known_hosts: Path | None = None
    bearer_token: str | None = field(default=None, repr=False)  # sent as ``Authorization: Bearer`` (Flux's bearerToken)

    def environment(self, url: str = "", limits: GitLimits | None = None) -> dict[str, str]:
        """git's environment for ``url``: the token header is scoped to that URL's origin (so another remote
        in the same command never receives it) and redirects are not followed (git would send the header
        to wherever they lead); ``limits`` become git's low-speed and SSH timeouts."""
        limits = limits or GitLimits()
        env: dict[str, str] = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false"}
        config: list[tuple[str, str]] = []
        header = None
        if self.bearer_token is not None:
            header = f"Authorization: Bearer {self.bearer_token}"
        elif self.password is not None:
            user = self.username or "x-access-token"
            header = f"Authorization: Basic {base64.b64encode(f'{user}:{self.password}'.encode()).decode()}"
        if header is not None:
            parts = urlsplit(url)
            origin = parts.netloc.rsplit("@", 1)[-1]  # never a user:password@ part in a config key
            scope = f"http.{parts.scheme}://{origin}/." if parts.scheme in ("http", "https") and origin else "http."
            config += [(f"{scope}extraHeader", header), ("http.followRedirects", "false")]
        # curl aborts a transfer slower than low_speed_limit bytes/s for low_speed_time seconds
        config += [("http.lowSpeedLimit", str(limits.low_speed_limit)), ("http.lowSpeedTime", str(limits.low_speed_time))]
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for i, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
        alive = max(1, limits.low_speed_time // 3)  # a silent SSH peer is dropped after about low_speed_time
        ssh = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        ssh += ["-o", f"ConnectTimeout={limits.connect_timeout}", "-o", f"ServerAliveInterval={alive}"]
        ssh += ["-o", "ServerAliveCountMax=3"]
        control = _control_dir()
        if control is not None:  # one SSH connection reused by ls-remote, fetch and push
            # the socket is per key + known_hosts: a connection verified under one trust setting is never
            # reused under another (that would skip host key checking)
            trust = hashlib.sha256(f"{self.ssh_key}\0{self.known_hosts}".encode()).hexdigest()[:12]
            ssh += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}/{trust}-%C", "-o", "ControlPersist=60"]
        else:
            ssh += ["-o", "ControlMaster=no"]
        if self.known_hosts is not None:
            ssh += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if self.ssh_key is not None:
            ssh += ["-i", str(self.ssh_key), "-o", "IdentitiesOnly=yes"]
        env["GIT_SSH_COMMAND"] = " ".join(ssh)
        return env


def flux_git_auth(creds: GitCredentials, directory: Path) -> GitAuth:
    """A GitAuth from a Flux Git Secret's credentials: basic auth as is; an SSH identity and known_hosts
    written to ``directory`` (created 0700; files 0600, created so — never readable by others for a moment).
    ``bearerToken`` as an ``Authorization: Bearer`` header (HTTPS); a passphrase-protected identity is refused by name."""
    from gitopskit.fluxsecrets import GitAuthKind  # Flux's Secret formats: only for credentials from a Secret

    if creds.kind is GitAuthKind.BASIC:
        return GitAuth(creds.username, creds.password)
    if creds.kind is GitAuthKind.BEARER:
        return GitAuth(bearer_token=creds.bearer_token)
    if creds.kind is GitAuthKind.SSH:
        if creds.password:
            raise GitError("an SSH identity with a passphrase is not supported (git runs ssh in batch mode)")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key, hosts = directory / "identity", directory / "known_hosts"
        for path, text in ((key, creds.identity if creds.identity.endswith("\n") else creds.identity + "\n"),
                           (hosts, creds.known_hosts)):  # fmt: skip
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
        return GitAuth(ssh_key=key, known_hosts=hosts)
    return GitAuth()


@dataclass(frozen=True, slots=True)
class SSHSigningKey:
    """An OpenSSH private key held in memory (Flux's ``signingKey`` of ``type: ssh``: ``identity`` + ``password``)."""

    key: str = field(repr=False)
    passphrase: str = field(default="", repr=False)
    origin: str = "the signing key"

    def __repr__(self) -> str:
        return f"SSHSigningKey(origin={self.origin!r}, key='***')"


@dataclass(frozen=True, slots=True)
class Identity:
    name: str = "imagebot"
    email: str = "imagebot@users.noreply.invalid"
    signing_key: Path | None = None
    signing_format: str = "ssh"  # or "openpgp" (GPG) / "x509"
    openpgp: OpenPGPKey | None = None  # a key held in memory (Flux's signingKey): each commit signed with it
    ssh: SSHSigningKey | None = None  # likewise, an SSH key (git's own ``gpg.format=ssh`` signing)

    def config(self) -> dict[str, str]:
        cfg = {"user.name": self.name, "user.email": self.email, "commit.gpgsign": "false"}
        if self.signing_key is not None:
            cfg.update({"commit.gpgsign": "true", "gpg.format": self.signing_format, "user.signingkey": str(self.signing_key)})
        return cfg


@contextlib.contextmanager
def _ssh_signing(key: SSHSigningKey) -> Iterator[tuple[list[str], dict[str, str]]]:
    """git's SSH signing with ``key``: the key (and its passphrase, for ssh-keygen's askpass) written 0600 into a
    private 0700 directory that is removed afterwards; no ssh-agent is consulted."""
    d = Path(tempfile.mkdtemp(prefix="imagebot-sshsig-"))
    try:
        files = {"key": key.key if key.key.endswith("\n") else key.key + "\n", "pass": key.passphrase + "\n"}
        for name, text in files.items():
            fd = os.open(d / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
        askpass = d / "askpass"
        fd = os.open(askpass, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"#!/bin/sh\nexec cat '{d / 'pass'}'\n")
        config = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={d / 'key'}", "-c", "gpg.ssh.program=ssh-keygen"]
        yield config, {"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0", "SSH_AUTH_SOCK": ""}
    finally:
        shutil.rmtree(d, ignore_errors=True)


class PushOutcome(StrEnum):
    OK = "ok"
    UP_TO_DATE = "up-to-date"
    REJECTED = "rejected"  # non-fast-forward / stale lease / lost a race: fetch, redo, retry


_REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "stale info")
_REMOTE_RACE = ("cannot lock ref", "failed to update ref", "incorrect old value", "but expected")


def _unfenced() -> None:
    pass


_UNREACHABLE = (
    "could not resolve host", "connection refused", "could not read from remote", "failed to connect", "couldn't connect",
)  # fmt: skip
_MISSING = ("not found", "couldn't find remote ref", "does not appear to be a git repository")


def _classify(low: str) -> tuple[GitFailure, str]:
    """A failure's kind and what to do about it, from git's lower-cased messages (the first that matches)."""
    if any(f" {code}" in low for code in (301, 302, 303, 307, 308)) or "redirect" in low:
        return GitFailure.REDIRECT, (
            " — the remote redirected elsewhere; credentials are never sent through a redirect: configure the URL it "
            "redirects to"
        )
    if "too slow" in low or "timed out" in low or "timeout" in low:
        return GitFailure.TIMEOUT, " — the remote timed out (no answer, or too slow)"
    if "host key verification failed" in low or "no matching host key" in low:
        return GitFailure.AUTH, (
            " — the server's host key is not in the known_hosts given (add it; imagebot never trusts on first use)"
        )
    if any(m in low for m in ("authentication failed", "permission denied", "could not read username", " 401", " 403")):
        return GitFailure.AUTH, " — check the credentials (token or deploy key) and their write access"
    if any(m in low for m in _UNREACHABLE):
        return GitFailure.UNREACHABLE, " — the remote is unreachable"
    if any(m in low for m in _MISSING):
        return GitFailure.NOT_FOUND, ""
    return GitFailure.OTHER, ""


def cache_key(url: str, branch: str) -> str:
    return hashlib.sha256(f"{url}\0{branch}".encode()).hexdigest()[:20]


class GitCommandError(Exception):
    """A git command that exited non-zero (internal: callers see :class:`GitError`)."""

    def __init__(self, command: list[str], status: int, stderr: str, stdout: str) -> None:
        super().__init__(f"{' '.join(command)} exited {status}: {stderr.strip()[:200]}")
        self.command, self.status, self.stderr, self.stdout = command, status, stderr, stdout


# How long a prefetched tip is used by sync without fetching again.
PREFETCH_FRESH = 30.0


def _verb(args: tuple[str, ...] | list[str]) -> str:
    """The git command in ``args`` (after any ``-c key=value`` options)."""
    i = 0
    while i + 1 < len(args) and args[i] == "-c":
        i += 2
    return args[i] if i < len(args) else "git"


class Workspace:
    def __init__(
        self,
        url: str,
        branch: str,
        cache_root: Path,
        auth: GitAuth | None = None,
        identity: Identity | None = None,
        limits: GitLimits | None = None,
    ) -> None:
        self.url = url
        self.branch = branch
        self.auth = auth or GitAuth()
        self.identity = identity or Identity()
        self.limits = limits or GitLimits()
        self.dir = cache_root / cache_key(url, branch)
        self._env = self.auth.environment(url, self.limits)
        # called right before every push; raises (e.g. NotLeader) to refuse it — a leader election's fence
        self.fence: Callable[[], None] = _unfenced
        # Every operation runs the git CLI (under deadlines); no library is loaded for it (GitPython's
        # import alone cost a cold `run --once` ~70 ms). True once cloned or reopened by this process.
        self._opened = False
        self._fetched: dict[str, float] = {}  # branch → when a fetch/clone brought its tip (monotonic)
        self._held = 0
        self._mutex = threading.RLock()

    @contextlib.contextmanager
    def exclusive(self, timeout: float = 120.0) -> Iterator[None]:
        """One user of this workspace directory at a time — threads and processes alike (an flock beside
        it; re-entrant). Holding it, a git lock file inside is a crash's leftover, and is removed."""
        with self._mutex:
            if self._held:
                self._held += 1
                try:
                    yield
                finally:
                    self._held -= 1
                return
            self.dir.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir.parent / f"{self.dir.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise GitError(
                                f"workspace {self.dir} stayed busy for {timeout:.0f}s: another imagebot process uses "
                                "the same cache directory (give each its own --cache-dir)"
                            ) from None
                        time.sleep(0.05)
                self._held = 1
                try:
                    self._remove_stale_locks()
                    yield
                finally:
                    self._held = 0
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _remove_stale_locks(self) -> None:
        gitdir = self.dir / ".git"
        if not gitdir.is_dir():
            return
        stale = [gitdir / n for n in ("index.lock", "HEAD.lock", "shallow.lock", "config.lock", "packed-refs.lock")]
        stale += list((gitdir / "refs").rglob("*.lock"))
        for f in stale:
            if f.is_file():
                f.unlink()
                log.warning("removed %s, left by an interrupted git command", f)

    # ------------------------------------------------------------------ plumbing
    def _git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        self._open()
        try:
            return self._run(list(args), self.dir, env)
        except GitCommandError as exc:
            raise self._error(args, exc) from exc

    def _run(self, args: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> str:
        """Run one git command under the overall deadline; stdout, or GitCommandError (past the deadline: GitError)."""
        full = {**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **self._env, **(env or {})}  # messages we can match
        hint = ": the remote did not answer in time (set GITOPSKIT_GIT_TIMEOUT for a slower remote)"
        code, out, err = self._exec(args, cwd, full, None, hint)
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if code:
            raise GitCommandError(["git", _verb(args)], code, stderr, stdout)
        return stdout.removesuffix("\n")

    def _exec(
        self, args: list[str], cwd: Path, env: Mapping[str, str], stdin: bytes | None, hint: str = ""
    ) -> tuple[int, bytes, bytes]:
        """The one way git is run: in a process group of its own, under the overall deadline. Past it the whole
        group is killed — git's helpers (git-remote-http, ssh) too, which killing git alone would leave running,
        holding the connection and our pipes — and it is a GitError ending in ``hint``."""
        proc = subprocess.Popen(
            ["git", *args],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # one process group to kill
        )
        try:
            out, err = proc.communicate(stdin, timeout=self.limits.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            timeout = GitError(f"git {_verb(args)} {safe_url(self.url)} timed out after {self.limits.timeout:g}s{hint}")
            timeout.kind = GitFailure.TIMEOUT
            raise timeout from None
        return proc.returncode, out, err

    def _describe(self, args: tuple[str, ...] | list[str], exc: GitCommandError) -> str:
        return str(self._error(args, exc))

    def _error(self, args: tuple[str, ...] | list[str], exc: GitCommandError) -> GitError:
        """The GitError of a failed command: git's own lines (credentials redacted), what to do, and its kind."""
        raw = redact(str(exc.stderr or "")).strip()
        raw = raw.removeprefix("stderr:").strip().strip("'").strip()
        lines = [ln.strip() for ln in raw.splitlines() if ln.strip()]
        keep = [
            ln
            for ln in lines
            if ln.startswith(("fatal:", "error:", "remote:", "!", "To ", "hint:"))
            or any(k in ln.lower() for k in ("rejected", "host key", "permission denied", "denied", "timed out"))
        ]
        stderr = " ".join(keep or lines)
        kind, hint = _classify(stderr.lower())
        err = GitError(f"git {_verb(args)} {safe_url(self.url)} failed: {stderr[:400]}{hint}")
        err.kind = kind
        return err

    @property
    def cloned(self) -> bool:
        """Whether this process has cloned or reopened the workspace already."""
        return self._opened

    def _open(self) -> None:
        if not self._opened:
            self._open_or_clone()

    # ------------------------------------------------------------------ operations
    def sync(self, branch: str | None = None) -> str:
        """Make the workspace equal to the remote tip of ``branch`` (default: the checkout branch)."""
        branch = branch or self.branch
        with self.exclusive():
            self._bring(branch, fresh_for=PREFETCH_FRESH)
            self._fetched.pop(branch, None)  # a later sync fetches again
            self._git("checkout", "-q", "--force", "-B", branch, f"refs/remotes/origin/{branch}")  # index + tree = tip
            self._git("clean", "-q", "-fdx")  # and nothing untracked left by a crash
            return self.head()

    def prefetch(self, branch: str | None = None) -> None:
        """Clone or fetch ``branch`` now (e.g. while registries are scanned), so that a :meth:`sync` within
        :data:`PREFETCH_FRESH` seconds needs no network. A tip that moves meanwhile only costs a rejected
        push, which the writer answers by syncing again."""
        branch = branch or self.branch
        with self.exclusive():
            self._bring(branch, fresh_for=PREFETCH_FRESH)

    def _bring(self, branch: str, fresh_for: float) -> None:
        """The remote tip of ``branch`` in refs/remotes/origin, fetched unless it came less than ``fresh_for`` s ago."""
        self._open()
        when = self._fetched.get(branch)
        if when is not None and time.monotonic() - when < fresh_for:
            return
        self._fetch_ref(branch)
        self._fetched[branch] = time.monotonic()

    def _open_or_clone(self) -> None:
        with self.exclusive():
            self._open_or_clone_locked()

    def _open_or_clone_locked(self) -> None:
        if self._opened:
            return
        if self.dir.exists():
            if self._origin_url() == self.url:
                self._opened = True
                self._configure()
                return
            log.warning("workspace %s is not a clone of %s: recreating it", self.dir, safe_url(self.url))
            shutil.rmtree(self.dir)
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.dir.with_name(self.dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        clone = ["clone", "-q", "--depth", "1", "--branch", self.branch, "--single-branch", "--no-tags", "--", self.url, str(tmp)]
        try:
            self._run(clone, self.dir.parent)
        except GitCommandError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise self._error(["clone"], exc) from exc
        except GitError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        tmp.rename(self.dir)
        self._opened = True
        self._configure()
        self._fetched[self.branch] = time.monotonic()  # the clone brought this tip: no fetch right after it

    def _origin_url(self) -> str | None:
        """The origin URL of the clone in ``self.dir``, or None when it is not a clone of its own."""
        if not (self.dir / ".git").is_dir():
            return None
        try:  # GIT_DIR pinned: a broken clone must not be answered by a repository around it
            return self._run(["--git-dir", str(self.dir / ".git"), "config", "--get", "remote.origin.url"], self.dir)
        except (GitCommandError, GitError):
            return None

    def _configure(self) -> None:
        # git's automatic gc runs detached by default: it rewrote .git/shallow under our next fetch
        # ("shallow file has changed since we read it"). In the foreground it runs inside the command
        # that triggered it, under this workspace's lock.
        settings = {**self.identity.config(), "gc.autoDetach": "false"}
        have = dict(line.partition("=")[::2] for line in self._run(["config", "--local", "--list"], self.dir).splitlines())
        for key, value in settings.items():
            if have.get(key.lower()) != value:  # git lists keys lower-cased (section.key)
                self._run(["config", key, value], self.dir)

    def head(self) -> str:
        return self._git("rev-parse", "--verify", "HEAD^{commit}")

    def remote_sha(self, branch: str) -> str | None:
        out = self._git("ls-remote", "--heads", "origin", f"refs/heads/{branch}")
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{branch}":
                return sha
        return None

    def tip(self, branch: str) -> str:
        """The commit of ``branch`` as last fetched (refs/remotes/origin), without fetching."""
        return self._git("rev-parse", "--verify", f"refs/remotes/origin/{branch}^{{commit}}")

    def _fetch_ref(self, branch: str) -> None:
        """The remote tip of ``branch`` into refs/remotes/origin/``branch`` (shallow, no tags)."""
        self._git("fetch", "--depth", "1", "--no-tags", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")

    def fetch(self, branch: str) -> str:
        self._fetch_ref(branch)
        return self._git("rev-parse", "--verify", f"refs/remotes/origin/{branch}^{{commit}}")

    def tree_of(self, rev: str) -> str:
        return self._git("rev-parse", "--verify", f"{rev}^{{tree}}")

    def commit(self, message: str, *, verbatim: bool = False) -> str | None:
        """Commit everything changed in the work tree; None when nothing changed. ``verbatim``: the message
        exactly as given (as go-git writes Flux's), not cleaned up by git."""
        # Every file is streamed into one pack (git's bulk check-in for "big" files) instead of a loose
        # object each: staging 200 edited manifests took ~0.5 s of file creation, now ~0.1 s.
        self._git("-c", "core.bigFileThreshold=1", "add", "-A")
        if not self._git("status", "--porcelain"):
            return None
        env = {
            "GIT_AUTHOR_NAME": self.identity.name,
            "GIT_AUTHOR_EMAIL": self.identity.email,
            "GIT_COMMITTER_NAME": self.identity.name,
            "GIT_COMMITTER_EMAIL": self.identity.email,
        }
        cleanup = ["--cleanup=verbatim", "--allow-empty-message"] if verbatim else []
        if self.identity.ssh is not None:
            with _ssh_signing(self.identity.ssh) as (sign_config, sign_env):
                try:
                    self._git(*sign_config, "commit", "-q", "--no-verify", "-S", *cleanup, "-m", message, env=env | sign_env)
                except GitError as exc:
                    text = str(exc).lower()
                    why = (
                        "wrong password for the SSH signing key"
                        if "passphrase" in text
                        else "the key does not load as an OpenSSH private key"
                        if "load key" in text or "invalid format" in text
                        else "git could not sign the commit"
                    )
                    raise GitError(f"commit not signed, nothing pushed: {self.identity.ssh.origin}: {why}") from None
            return self.head()
        self._git("commit", "-q", "--no-verify", *cleanup, "-m", message, env=env)
        if self.identity.openpgp is not None:
            try:
                return self._sign_head(self.identity.openpgp)
            except BaseException:
                self._git("reset", "-q", "--soft", "HEAD~1")  # never leave an unsigned commit to be pushed
                raise
        return self.head()

    def _sign_head(self, key: OpenPGPKey) -> str:
        """Replace HEAD by the same commit with an OpenPGP signature (the ``gpgsig`` header), as go-git writes it."""
        old = self.head()
        raw = self._bytes(["cat-file", "commit", old])
        try:
            signature = openpgp.sign(raw, key, min(openpgp.DEFAULT_TIMEOUT, self.limits.timeout))
        except openpgp.SigningError as exc:
            raise GitError(f"commit not signed, nothing pushed: {exc}") from None
        new = self._bytes(["hash-object", "-t", "commit", "-w", "--stdin"], openpgp.signed_commit(raw, signature))
        sha = new.decode("ascii").strip()
        self._git("update-ref", "-m", "imagebot: sign", "HEAD", sha, old)
        return sha

    def _bytes(self, args: list[str], stdin: bytes | None = None) -> bytes:
        """A local git command's exact stdout (object plumbing), under the overall deadline."""
        code, out, err = self._exec(args, self.dir, {**os.environ, "LC_ALL": "C"}, stdin)
        if code:
            raise GitError(f"git {args[0]} failed: {redact(err.decode('utf-8', 'replace')).strip()[:300]}")
        return out

    def push(self, remote_branch: str, lease: str | None = None, force_with_lease: bool = False) -> PushOutcome:
        """Push HEAD to ``remote_branch``. Never forces, except with a lease on the bot's own branch."""
        self.fence()
        args = ["push", "--porcelain", "origin", f"HEAD:refs/heads/{remote_branch}"]
        if force_with_lease:
            args.insert(1, f"--force-with-lease=refs/heads/{remote_branch}:{lease or ''}")
        self._open()
        try:
            out = self._run(args, self.dir)
        except GitCommandError as exc:
            text = f"{exc.stdout or ''} {exc.stderr or ''}"
            # "[remote rejected]": a hook or branch protection said no — final, unless it only lost a ref race
            markers = _REMOTE_RACE if "[remote rejected]" in text else _REJECTED
            retryable = any(m in text for m in markers)
            if retryable:
                return PushOutcome.REJECTED
            raise self._error(args, exc) from exc
        return PushOutcome.UP_TO_DATE if "[up to date]" in out else PushOutcome.OK
