"""Byte-exact edits of image references in YAML: setter markers and marker-free targets.

Pure cores (``yamlscan``, ``values``, ``setters``, ``images``, ``engine``); ``walk`` is the
only module that touches the disk.
"""

from imagebot.update.engine import edit_text
from imagebot.update.model import (
    Change,
    ChangeSet,
    EditRequest,
    FileEdit,
    HelmKeys,
    ImageUpdate,
    ObjectIdentity,
    Problem,
    ProblemKind,
    Target,
)

__all__ = [
    "Change",
    "ChangeSet",
    "EditRequest",
    "FileEdit",
    "HelmKeys",
    "ImageUpdate",
    "ObjectIdentity",
    "Problem",
    "ProblemKind",
    "Target",
    "edit_text",
]
