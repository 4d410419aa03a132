"""Which device the models live on: CUDA, else MPS, else CPU; ``VITVIZ_DEVICE`` overrides."""

from __future__ import annotations

import os

import torch

__all__ = ["DEVICE_ENV", "default_device", "describe_device"]

DEVICE_ENV = "VITVIZ_DEVICE"


def default_device() -> torch.device:
    """The device every model is loaded onto.

    ``VITVIZ_DEVICE`` (e.g. ``cpu``, ``cuda:1``, ``mps``) wins when set; an override naming a
    device this machine lacks is refused rather than silently replaced.
    """
    override = os.environ.get(DEVICE_ENV, "").strip()
    if override:
        try:
            device = torch.device(override)
        except RuntimeError as e:
            raise ValueError(f"{DEVICE_ENV}={override!r} is not a torch device name") from e
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{DEVICE_ENV}={override!r} but CUDA is not available on this machine")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{DEVICE_ENV}={override!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"{DEVICE_ENV}={override!r} but MPS is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """A short human label, e.g. ``cuda (NVIDIA H100)`` or ``cpu (2 threads)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type
