"""The one exception tree of imagebot, with the exit code each kind maps to.

Adapters translate foreign exceptions into these (``raise RegistryError(...) from exc``);
the CLI maps them to exit codes and prints the message, which must tell the user what to do.
"""

from __future__ import annotations

from enum import IntEnum

from gitopskit import errors as kit


class ExitCode(IntEnum):
    """Documented exit codes of every ``imagebot`` command."""

    OK = 0
    NOTHING = 1  # nothing selected / nothing qualifies
    USAGE = 2  # bad arguments, invalid policy, reference or configuration
    REGISTRY = 3  # registry unreachable, auth failed, not found, rate-limited after retries
    EDIT = 4  # an edit failed verification; that file was left untouched
    GIT = 5  # clone/fetch/commit/push failed
    FORGE = 6  # the Git host API (pull requests) failed
    CLUSTER = 7  # the Kubernetes API server unreachable or refusing (hold/release/approve --policy)


class ImagebotError(Exception):
    """Base of every error imagebot raises on purpose."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(ImagebotError):
    exit_code = ExitCode.USAGE


class PolicyError(ImagebotError):
    """A policy specification is invalid (bad range, regex, order or template)."""

    exit_code = ExitCode.USAGE


class InvalidReference(ImagebotError):
    """An image reference, tag or digest is malformed."""

    exit_code = ExitCode.USAGE


class ConfigError(ImagebotError):
    exit_code = ExitCode.USAGE


class ClusterOnlyError(ConfigError):
    """File mode met a field whose value only the cluster holds (a Flux secretRef, certSecretRef, signingKey…)
    at the moment it was needed: the message names the object and field (exit 2)."""


class RegistryError(ImagebotError):
    exit_code = ExitCode.REGISTRY


class EditError(ImagebotError):
    exit_code = ExitCode.EDIT


class GitError(ImagebotError, kit.GitError):
    exit_code = ExitCode.GIT


# The shared kit's errors carry no exit code of their own; this is what they mean to imagebot.
_KIT_EXIT_CODES: dict[type[kit.KitError], ExitCode] = {kit.GitError: ExitCode.GIT, kit.KubeConfigError: ExitCode.USAGE}
FAILURES = (ImagebotError, kit.KitError)


def exit_code_of(exc: BaseException) -> ExitCode:
    """The documented exit code for one of imagebot's own or the kit's errors."""
    if isinstance(exc, ImagebotError):
        return exc.exit_code
    for kind, code in _KIT_EXIT_CODES.items():
        if isinstance(exc, kind):
            return code
    return ExitCode.USAGE


class ForgeError(ImagebotError):
    exit_code = ExitCode.FORGE


class ClusterError(ImagebotError):
    """The Kubernetes API server could not be reached, refused a request, or kept changing the object."""

    exit_code = ExitCode.CLUSTER
