import pytest
import torch

from vitviz.devices import default_device


def test_override_and_fallback(monkeypatch):
    monkeypatch.setenv("VITVIZ_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.delenv("VITVIZ_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert default_device().type == expected


def test_bad_overrides_are_refused(monkeypatch):
    monkeypatch.setenv("VITVIZ_DEVICE", "gpu0")
    with pytest.raises(ValueError, match="'gpu0' is not a torch device name"):
        default_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("VITVIZ_DEVICE", "cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            default_device()
