"""imagebot: the image-automation bot and Git writer of the GitOps pair."""

__version__ = "0.1.0"
