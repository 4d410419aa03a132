"""The process-wide cache of large results is bounded in bytes, least recently used out first."""

import torch

from ui import cache


def test_the_bounded_cache_keeps_to_its_byte_budget(monkeypatch):
    cache.clear_bounded()
    monkeypatch.setenv(cache.CACHE_MB_ENV, "10")  # 10 MB: two 4 MB results fit, a third pushes out the oldest
    calls = []

    @cache.bounded()
    def attentions(key: str, _model=None) -> list[torch.Tensor]:
        calls.append(key)
        return [torch.zeros(1_000_000)]  # 4 MB of float32

    first = attentions("a", _model=object())
    assert attentions("a", _model=object()) is first and calls == ["a"]  # `_`-arguments are not in the key
    attentions("b")
    attentions("a")  # a is now the most recent
    attentions("c")  # 12 MB: b, the least recently used, goes
    assert cache.bounded_bytes() == 8_000_000
    attentions("a")
    attentions("b")
    assert calls == ["a", "b", "c", "b"]
    cache.clear_bounded()
    assert cache.bounded_bytes() == 0
