"""Real models fetched on request: the download path run against a stand-in Hub on a loopback port.

The stand-in serves weights written here from a random-init timm model; huggingface_hub downloads them
into a temporary HF_HOME exactly as it would from huggingface.co (HF_ENDPOINT points it there).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save

from hubserver import StandInHub
from vitviz import hub
from vitviz.hub import DownloadError, WeightsNotDownloaded
from vitviz.models import load_model

ROOT = Path(__file__).resolve().parent.parent
NAME = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"  # 23 MB: the smallest tagged ImageNet ViT
REPO = f"timm/{NAME}"


@pytest.fixture(scope="module")
def served_weights():
    torch.manual_seed(0)
    model = timm.create_model(NAME.split(".")[0], pretrained=False).eval()
    return model, save({k: v.contiguous() for k, v in model.state_dict().items()})


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """A fresh, empty Hugging Face cache and downloads allowed (the suite runs with HF_HUB_OFFLINE=1)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hf"


def _env(hub_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    return {**env, "HF_ENDPOINT": hub_url, "PYTHONPATH": str(ROOT)}


def test_fetch_downloads_with_progress_then_the_model_loads_with_imagenet_names(served_weights, hub_env, monkeypatch):
    reference, data = served_weights
    with StandInHub({(REPO, "model.safetensors"): data}) as stand_in:
        done = subprocess.run([sys.executable, "-m", "vitviz", "fetch", NAME], env=_env(stand_in.url), cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"{NAME}: cached at {hub_env}" in done.stdout and "100%" in done.stderr  # the progress bar
        downloads = sum(r[0] == "GET" for r in stand_in.requests)
        again = subprocess.run([sys.executable, "-m", "vitviz", "fetch", NAME], env=_env(stand_in.url), cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and sum(r[0] == "GET" for r in stand_in.requests) == downloads  # cached: no GET
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the model loads from the cache alone
    model = load_model(NAME, device="cpu")
    assert "pretrained weights from the local cache" in model.card.provenance and not model.card.notes
    assert model.card.label_set == "ImageNet-1k" and model.card.class_names[1].startswith("goldfish")
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images))  # the served weights, not random ones


def test_a_dropped_connection_is_retried_and_a_broken_download_resumes_on_the_next_click(served_weights, hub_env,
                                                                                        monkeypatch):
    _, data = served_weights
    key = (REPO, "model.safetensors")
    etag = hashlib.sha256(data).hexdigest()
    with StandInHub({key: data}) as stand_in:
        monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
        # one drop at a third: huggingface_hub tries again within the same download and finishes
        stand_in.break_after[key] = (len(data) // 3, 1)
        seen = []
        path = hub.download_weights(NAME, progress=lambda done, total: seen.append((done, total)))
        assert path.read_bytes() == data and seen[-1] == (len(data), len(data))
        assert sum(r[0] == "GET" for r in stand_in.requests) == 2
        assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))  # progress only moves forward
        assert not hub.partial_download(hub.HubFile(REPO, "model.safetensors"), etag).exists()
    monkeypatch.setenv("HF_HOME", str(hub_env.parent / "fresh"))
    partial = hub.partial_download(hub.HubFile(REPO, "model.safetensors"), etag)
    # Bytes reach the disk a chunk at a time (huggingface_hub's DOWNLOAD_CHUNK_SIZE, 10 MB): break on chunk ends.
    third, two_thirds = constants.DOWNLOAD_CHUNK_SIZE, 2 * constants.DOWNLOAD_CHUNK_SIZE
    assert two_thirds < len(data)
    with StandInHub({key: data}) as stand_in:
        monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
        stand_in.break_after[key] = (third, 1000)  # the server dies at a third, every time
        with pytest.raises(DownloadError, match=rf"The download of {NAME} broke off after {third / 1e6:.1f} MB of "
                                                rf"{len(data) / 1e6:.1f} MB .* press Download again .* resume"):
            hub.download_weights(NAME)
        assert hub.cached_weights(NAME) is None  # no poisoned cache entry
        with pytest.raises(WeightsNotDownloaded):
            load_model(NAME, device="cpu")
        assert partial.read_bytes() == data[:third]  # what came is kept, outside the cache
        # the second click asks only for the rest, and breaks off again at two thirds
        stand_in.requests.clear()
        stand_in.break_after[key] = (two_thirds, 1000)
        with pytest.raises(DownloadError, match="broke off"):
            hub.download_weights(NAME)
        gets = [r[2] for r in stand_in.requests if r[0] == "GET"]  # then huggingface_hub's own retries
        assert gets[0] == f"bytes={third}-" and set(gets[1:]) == {f"bytes={two_thirds}-"}
        assert partial.read_bytes() == data[:two_thirds]
        stand_in.break_after.clear()  # the third click completes from two thirds
        stand_in.requests.clear()
        seen = []
        path = hub.download_weights(NAME, progress=lambda done, total: seen.append(done))
        assert [r[2] for r in stand_in.requests if r[0] == "GET"] == [f"bytes={two_thirds}-"]
        assert seen[0] == two_thirds and seen[-1] == len(data)  # the bar starts where the last try stopped
        assert path.read_bytes() == data and hub.cached_weights(NAME) == path and not partial.exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_model(NAME, device="cpu").card.label_set == "ImageNet-1k"


def test_a_damaged_partial_download_is_caught_by_its_checksum_and_started_again(served_weights, hub_env,
                                                                                  monkeypatch):
    _, data = served_weights
    key = (REPO, "model.safetensors")
    partial = hub.partial_download(hub.HubFile(REPO, "model.safetensors"), hashlib.sha256(data).hexdigest())
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * (len(data) // 2))  # the right length of the wrong bytes
    with StandInHub({key: data}) as stand_in:
        monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
        with pytest.raises(DownloadError, match=f"The download of {NAME} does not match its SHA-256 .* deleted"):
            hub.download_weights(NAME)
        assert hub.cached_weights(NAME) is None and not partial.exists()
        partial.write_bytes(data + b"more")  # longer than the file: not a prefix of it, so it is dropped
        stale = partial.with_name("ab" * 32 + ".incomplete")  # a broken-off download of an older version
        stale.write_bytes(data[:1000])
        stand_in.requests.clear()
        assert hub.download_weights(NAME).read_bytes() == data
        assert [r[2] for r in stand_in.requests if r[0] == "GET"] == [""]
        assert not stale.exists() and hub.partial_bytes(NAME) == 0


def test_a_full_disk_is_said_before_any_byte_is_fetched_and_the_cli_says_one_line(served_weights, hub_env,
                                                                                   monkeypatch):
    import shutil
    from collections import namedtuple

    _, data = served_weights
    key = (REPO, "model.safetensors")
    usage = namedtuple("usage", "total used free")
    with StandInHub({key: data}) as stand_in:
        monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
        monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 5_000_000, 5_000_000))
        with pytest.raises(DownloadError, match=rf"{NAME}'s weights need {len(data) / 1e6:.1f} MB more on the disk "
                                                rf"that holds the Hugging Face cache \({hub_env / 'hub'}\), which has "
                                                r"5\.0 MB free: free some space .* then press Download again\."):
            hub.download_weights(NAME)
        assert not any(r[0] == "GET" for r in stand_in.requests) and hub.cached_weights(NAME) is None
        monkeypatch.undo()
        # a transfer that keeps breaking, on the command line: one line, however many retries came before it
        stand_in.break_after[key] = (constants.DOWNLOAD_CHUNK_SIZE, 1000)
        done = subprocess.run([sys.executable, "-m", "vitviz", "fetch", NAME], cwd=ROOT, capture_output=True,
                              text=True, timeout=120,
                              env={**_env(stand_in.url), "HF_HOME": str(hub_env), "HF_HUB_DISABLE_XET": "1"})
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip() and "%" not in line]  # the bar aside
    assert len(lines) == 1 and "broke off after 10.5 MB of 22.9 MB" in lines[0] and "to resume from there" in lines[0]


def test_no_network_or_downloads_off_fail_fast_with_one_sentence(hub_env, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing answers on the discard port
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"not on this machine and the Hugging Face Hub could not be reached .* "
                                            r"run `python -m vitviz fetch"):
        hub.download_weights(NAME)
    assert time.monotonic() - start < 5
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"downloads are off here \(HF_HUB_OFFLINE is set\)"):
        hub.download_weights(NAME)
    assert time.monotonic() - start < 5
    done = subprocess.run([sys.executable, "-m", "vitviz", "fetch", NAME], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "HF_HUB_OFFLINE is set" in done.stderr


def test_a_file_that_is_not_weights_is_refused_and_removed(hub_env, monkeypatch):
    with StandInHub({(REPO, "model.safetensors"): b"<html>a captive portal</html>"}) as stand_in:
        monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
        with pytest.raises(DownloadError, match="is not readable weights .* removed from the cache"):
            hub.download_weights(NAME)
        assert hub.cached_weights(NAME) is None


def test_unknown_names_say_so(hub_env, monkeypatch):
    with StandInHub({}) as stand_in:
        monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
        with pytest.raises(DownloadError, match=r"someone/nothing-here has no config.json on the Hugging Face Hub \(HTTP 404\)"):
            hub.download_weights("hf-hub:someone/nothing-here")
    with pytest.raises(DownloadError, match="timm has no pretrained weights for vit_base_patch16_gap_224"):
        hub.download_weights("vit_base_patch16_gap_224")


def test_the_catalogue_lists_the_seed_geometry_and_the_picker_offers_it(hub_env):
    from vitviz.registry import list_models

    names = {entry.name: entry for entry in hub.catalogue()}
    assert {"vit_base_patch16_224.augreg2_in21k_ft_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k",
            "deit_small_distilled_patch16_224.fb_in1k", "vit_small_patch16_224.dino",
            "vit_small_patch14_reg4_dinov2.lvd142m"} <= set(names)
    for entry in names.values():  # the data agrees with timm
        model = timm.create_model(entry.name, pretrained=False)
        assert sum(p.numel() for p in model.parameters()) == entry.parameters
        assert tuple(model.patch_embed.grid_size) == entry.grid and entry.download_mb == round(4 * entry.parameters / 1e6)
    labels = {e.ref: e.label for e in list_models()}
    assert labels["vit_base_patch16_224.augreg2_in21k_ft_in1k"] == (
        "vit_base_patch16_224.augreg2_in21k_ft_in1k (ViT-B/16, the seed's geometry; 346 MB)")


def _transformers_folder(tmp_path: Path, kind: str) -> tuple[torch.nn.Module, Path]:
    from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher, ViTConfig, ViTForImageClassification

    torch.manual_seed(1)
    config_class, model_class = ((ViTConfig, ViTForImageClassification) if kind == "vit"
                                 else (DeiTConfig, DeiTForImageClassificationWithTeacher))
    config = config_class(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                          intermediate_size=96, num_labels=3, id2label={0: "cat", 1: "dog", 2: "fox"},
                          label2id={"cat": 0, "dog": 1, "fox": 2})
    model = model_class(config).eval()
    folder = tmp_path / f"tiny-{kind}"
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.3, 0.4]}))
    return model, folder


@pytest.mark.parametrize("kind", ["vit", "deit"])
def test_transformers_checkpoints_load_with_logits_equal_to_transformers(kind, tmp_path):
    reference, folder = _transformers_folder(tmp_path, kind)
    model = load_model(folder, device="cpu")
    assert model.card.class_names == ("cat", "dog", "fox") and model.card.mean == (0.4, 0.5, 0.6)
    assert model.card.prefix_names == (("class token",) if kind == "vit" else ("class token", "distillation token"))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(pixel_values=images).logits, atol=1e-4, rtol=1e-4)


def test_a_transformers_checkpoint_by_hub_id(tmp_path, hub_env, monkeypatch):
    reference, folder = _transformers_folder(tmp_path, "vit")
    files = {("someone/tiny-vit", f.name): f.read_bytes() for f in folder.iterdir()}
    with StandInHub(files) as stand_in:
        monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
        with pytest.raises(WeightsNotDownloaded):
            load_model("hf-hub:someone/tiny-vit", device="cpu")
        hub.download_weights("hf-hub:someone/tiny-vit")
    model = load_model("hf-hub:someone/tiny-vit", device="cpu")
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(pixel_values=images).logits, atol=1e-4, rtol=1e-4)


def _fake_cached(hf_home: Path, name: str, data: bytes) -> None:
    """What a finished download leaves in the Hugging Face cache: a snapshot file and the ref to it."""
    repo = hf_home / "hub" / f"models--timm--{name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model.safetensors").write_bytes(data)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_home_offers_a_cached_imagenet_model_for_an_uploaded_photo(hub_env, monkeypatch):
    from apptest import open_page, png_bytes

    catalogue_name = "vit_small_patch16_224.augreg_in21k_ft_in1k"
    at = open_page("home", model="starter-shapes", upload=("kite.png", png_bytes()))
    assert not at.exception and not [b for b in at.button if b.key == "use_imagenet_model"]  # nothing cached yet
    torch.manual_seed(0)
    _fake_cached(hub_env, catalogue_name,
                 save({k: v.contiguous() for k, v in timm.create_model("vit_small_patch16_224").state_dict().items()}))
    at = open_page("home", model="starter-shapes", upload=("kite.png", png_bytes()))
    assert any(catalogue_name in info.value and "already on this machine" in info.value for info in at.info), [i.value for i in at.info]
    at.button(key="use_imagenet_model").click().run()
    assert not at.exception and at.session_state["model_choice"].startswith(catalogue_name)  # the picker's choice
    at = open_page("home", model=catalogue_name, upload=("kite.png", png_bytes()))  # and it loads from the cache
    assert any(f"Model: {catalogue_name}" in h.value for h in at.subheader) and not at.info


def test_the_page_says_a_broken_off_download_is_kept_and_its_button_resumes_it(hub_env, monkeypatch):
    from apptest import open_page

    name = "vit_small_patch16_224.augreg_in21k_ft_in1k"  # a catalogue model, in the picker
    torch.manual_seed(0)
    data = save({k: v.contiguous() for k, v in timm.create_model(name.split(".")[0]).state_dict().items()})
    file = hub.HubFile(f"timm/{name}", "model.safetensors")
    partial = hub.partial_download(file, hashlib.sha256(data).hexdigest())
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:constants.DOWNLOAD_CHUNK_SIZE])  # what an earlier click got before the break
    assert hub.partial_bytes(name) == constants.DOWNLOAD_CHUNK_SIZE
    with StandInHub({(file.repo_id, file.filename): data}) as stand_in:
        monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
        at = open_page("attention", model=name, sample="coffee")
        assert [w.value for w in at.warning][0].startswith(f"{name}'s pretrained weights (about 88 MB) are not downloaded")
        assert f"{constants.DOWNLOAD_CHUNK_SIZE / 1e6:.1f} MB of it came before an earlier download broke off" in \
            " ".join(c.value for c in at.caption)
        button = at.button(key=f"download-{name}")
        assert button.label == f"Resume the download of {name} (88 MB)"
        at = button.click().run()
        assert [r[2] for r in stand_in.requests if r[0] == "GET"] == [f"bytes={constants.DOWNLOAD_CHUNK_SIZE}-"]
    assert not at.exception and not at.warning and hub.cached_weights(name).read_bytes() == data
    assert hub.partial_bytes(name) == 0
    assert f"download-{name}" not in [b.key for b in at.button]
    from apptest import chart_specs  # the view is drawn, its top-5 bars named from ImageNet
    titles = [str(spec.get("layout", {}).get("title", "")) for spec in chart_specs(at)]
    assert any("Top predictions" in t for t in titles), titles
