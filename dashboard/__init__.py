"""The dashboard: one screen for apps, images, drift and history, read from the cluster and imagebot's state."""
