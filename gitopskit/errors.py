"""Base errors of the shared kit. Each half maps them onto its own tree and exit codes at its edge."""

from __future__ import annotations


class KitError(Exception):
    """Base of every error the kit raises on purpose."""


class GitError(KitError):
    """A git operation failed (clone, fetch, commit, push); the message has credentials redacted."""


class KubeConfigError(KitError):
    """No usable kubeconfig or in-cluster configuration."""


class NotLeader(KitError):
    """A write was refused: this replica is not (or no longer surely) the leader."""


class ListenError(KitError):
    """A server could not listen where it was told to (port taken, address not ours, not HOST:PORT)."""
