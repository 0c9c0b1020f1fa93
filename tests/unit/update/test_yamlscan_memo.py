"""The scan memo: a text scanned again (a delivery's read-back of what it just verified) is not parsed twice."""

from __future__ import annotations

import pytest

from imagebot.update import yamlscan
from imagebot.update.yamlscan import _Memo, scan


def test_the_same_text_is_answered_from_the_memo_and_another_text_is_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = yamlscan._scan
    monkeypatch.setattr(yamlscan, "_scan", lambda text: calls.append(text) or real(text))
    monkeypatch.setattr(yamlscan, "_MEMO", _Memo(1024 * 1024))
    text = "a: 1\nb: [x, y]\n"
    first = scan(text)
    assert scan(text) is first and calls == [text]
    assert [s.value for s in scan("a: 2\n").scalars] == ["2"] and len(calls) == 2


def test_the_memo_keeps_within_its_budget_and_never_holds_one_big_text() -> None:
    memo = _Memo(16 * 100)
    big = "k: " + "x" * 200 + "\n"  # over budget/16: never held
    memo.put(big, scan(big))
    assert memo.get(big) is None
    texts = [f"k: {i:094d}\n" for i in range(20)]  # 100 characters each: 16 fit
    for t in texts:
        memo.put(t, scan(t))
    assert memo.get(texts[0]) is None and memo.get(texts[-1]) is not None
    assert sum(memo.get(t) is not None for t in texts) == 16


def test_invalid_yaml_is_refused_every_time() -> None:
    with pytest.raises(yamlscan.YamlSyntaxError):
        scan("a: [1\n")
    with pytest.raises(yamlscan.YamlSyntaxError):
        scan("a: [1\n")
