"""OCI annotations parsed from an index, a manifest and a config blob (pure), and a state that fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from imagebot.registry.client import RegistryClient
from imagebot.registry.provenance import ProvenanceReader, parse, platforms
from imagebot.registry.state import ScanState
from imagebot.update.model import Provenance

P = "org.opencontainers.image."


def test_the_first_layer_with_a_key_wins_and_labels_fill_the_rest() -> None:
    index = {"annotations": {P + "source": "https://github.com/o/r", P + "revision": "abc"}, "manifests": []}
    manifest = {"annotations": {P + "revision": "ignored", P + "version": " 1.2.3 "}}
    config = {"config": {"Labels": {P + "created": "2026-01-01T00:00:00Z", P + "source": "ignored", "other": "x"}}}
    assert parse(index, manifest, config, plats=("linux/amd64",)) == Provenance(
        "https://github.com/o/r", "abc", "2026-01-01T00:00:00Z", "1.2.3", ("linux/amd64",)
    )


def test_malformed_documents_give_nothing_rather_than_fail() -> None:
    bad: list[Any] = [None, {"annotations": [1]}, {"config": {"Labels": None}}, {"annotations": {P + "source": 3}}]
    assert parse(*bad) == Provenance()


def test_platforms_skip_attestations_and_repeat_nothing() -> None:
    index = {"manifests": [
        {"platform": {"os": "linux", "architecture": "amd64"}},
        {"platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"platform": {"os": "unknown", "architecture": "unknown"}},  # a build attestation
        {"platform": {"os": "linux", "architecture": "amd64"}},
        "junk",
    ]}  # fmt: skip
    assert platforms(index) == ("linux/amd64", "linux/arm64/v8")


def test_a_state_that_cannot_be_read_leaves_the_annotations_unavailable(tmp_path: Path) -> None:
    state = ScanState(tmp_path / "state.db")
    state._conn().execute("DROP TABLE provenance")  # e.g. a file another version rewrote
    got = ProvenanceReader(state).read(cast(RegistryClient, object()), "r/app", "app", "sha256:" + "a" * 64)
    assert got.unavailable and "provenance" in got.unavailable
