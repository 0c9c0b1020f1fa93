"""Base errors of the shared kit. Each half maps them onto its own tree and exit codes at its edge."""

from __future__ import annotations

from enum import StrEnum


class KitError(Exception):
    """Base of every error the kit raises on purpose."""


class GitFailure(StrEnum):
    """What kind of failure a GitError is, for callers that report it by kind (a GitRepository's condition reason)."""

    AUTH = "auth"  # credentials refused or missing, or the server's host key not trusted
    UNREACHABLE = "unreachable"  # no connection: unknown host, refused, reset
    TIMEOUT = "timeout"  # no answer in time, or too slow
    REDIRECT = "redirect"  # the remote redirected elsewhere (never followed with credentials)
    NOT_FOUND = "not-found"  # the repository or the ref is not there
    OTHER = "other"


class GitError(KitError):
    """A git operation failed (clone, fetch, commit, push); the message has credentials redacted."""

    kind: GitFailure = GitFailure.OTHER  # set on the instance where the kit can tell


class KubeConfigError(KitError):
    """No usable kubeconfig or in-cluster configuration."""


class NotLeader(KitError):
    """A write was refused: this replica is not (or no longer surely) the leader."""


class ListenError(KitError):
    """A server could not listen where it was told to (port taken, address not ours, not HOST:PORT)."""
