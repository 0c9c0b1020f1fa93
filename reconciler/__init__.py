"""reconciler: renders the config repo and keeps a cluster equal to it."""

__version__ = "0.1.0"
