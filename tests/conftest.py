"""Shared test set-up: never touch the network, keep torch small on this 2-core machine."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("VITVIZ_DEVICE", "cpu")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def output_dir() -> "os.PathLike":
    """Where tests leave files worth looking at (screenshots); kept after the run."""
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "test-output"
    path.mkdir(exist_ok=True)
    return path
