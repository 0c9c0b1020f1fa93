"""The one exception tree of the reconciler, with exit codes (like `kubectl diff`: 1 means drift)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    DRIFT = 1  # `reconciler diff`: live differs from Git
    USAGE = 2  # bad arguments, or a source that violates --allowed-namespaces / --allow-cluster-scoped
    SOURCE = 3  # the source could not be fetched
    RENDER = 4  # the render failed: nothing was applied or pruned
    CLUSTER = 5  # the API server refused or could not be reached
    PRUNE_REFUSED = 6  # a prune guard held: nothing was deleted
    UNHEALTHY = 7  # --wait: the app did not become Healthy before --timeout
    CONFLICT = 8  # another app owns an object this app declares: the rest was applied, that object left alone


class ReconcilerError(Exception):
    exit_code: ExitCode = ExitCode.USAGE


class UsageError(ReconcilerError):
    exit_code = ExitCode.USAGE


class SourceError(ReconcilerError):
    exit_code = ExitCode.SOURCE


class RenderError(ReconcilerError):
    exit_code = ExitCode.RENDER


class ClusterError(ReconcilerError):
    exit_code = ExitCode.CLUSTER


class PruneRefused(ReconcilerError):
    exit_code = ExitCode.PRUNE_REFUSED


class Unhealthy(ReconcilerError):
    exit_code = ExitCode.UNHEALTHY


class DeadlineExceeded(ClusterError):
    """An app's sync ran past its timeout (Flux's spec.timeout); what was applied stays, the rest waits for a retry."""
