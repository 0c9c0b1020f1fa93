"""The demo's full loop as an end-to-end test: registry → bot → Git → reconciler → drift healed."""

from __future__ import annotations

import pytest

from tests.demo import Demo

pytestmark = [pytest.mark.cluster, pytest.mark.registry, pytest.mark.git]


def test_full_loop_from_ci_push_to_healed_drift(capsys: pytest.CaptureFixture[str]) -> None:
    assert Demo(keep=False).run() == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "chore(images): app 1.0.0 → 1.1.0 (prod)" in out
    assert "chore(images): app 1.0.0 → 1.2.0-rc.1 (dev)" in out
    assert "live: app-prod app:1.1.0, app-dev app:1.2.0-rc.1" in out
    assert "healed back to 1" in out and "kubectl /spec/replicas 1 → 4" in out
