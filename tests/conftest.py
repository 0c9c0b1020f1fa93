"""Shared fixtures: real servers started on 127.0.0.1 and stopped by PID."""

from tests.fixtures.cluster import cluster, namespace  # noqa: F401
