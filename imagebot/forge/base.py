"""The forge (Git host) behind one small protocol: find, open and update pull requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PullRequest:
    number: int
    url: str
    title: str
    body: str
    head: str
    base: str


class Forge(Protocol):
    def find_open(self, head: str, base: str) -> PullRequest | None: ...

    def open(
        self, head: str, base: str, title: str, body: str, labels: tuple[str, ...], reviewers: tuple[str, ...]
    ) -> PullRequest: ...

    def update(self, pr: PullRequest, title: str, body: str, labels: tuple[str, ...]) -> PullRequest: ...
