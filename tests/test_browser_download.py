"""A real pretrained model from the catalogue: picked, downloaded with a progress bar, then explained with ImageNet names.

The Hub is a stand-in on a loopback port serving weights written here from a random-init timm model;
the app's server downloads them into a temporary HF_HOME exactly as it would from huggingface.co.
"""

import pytest
import timm
import torch
from safetensors.torch import save

from browser import assert_no_exception, choose, open_view, wait_idle
from conftest import running_app
from hubserver import StandInHub

pytestmark = pytest.mark.browser

NAME = "vit_small_patch16_224.augreg_in21k_ft_in1k"


def test_download_a_catalogue_model_and_see_imagenet_names(browser, tmp_path, output_dir):
    torch.manual_seed(0)
    weights = save({k: v.contiguous() for k, v in timm.create_model("vit_small_patch16_224").state_dict().items()})
    with StandInHub({(f"timm/{NAME}", "model.safetensors"): weights}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1"}
        with running_app(output_dir / "download-server.log", env) as server:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server.url)
            wait_idle(page)
            choose(page, "Model", f"{NAME} (ViT-S/16; 88 MB)", where='[data-testid="stSidebar"]')
            wait_idle(page)
            page.wait_for_selector('main :text("are not downloaded yet")', timeout=60_000)
            assert "pretrained weights (about 88 MB) are not downloaded yet" in page.locator("main").inner_text()
            page.get_by_role("button", name=f"Download {NAME} (88 MB)").click()
            page.wait_for_selector('[data-testid="stProgress"]', timeout=60_000)  # the bar while bytes arrive
            page.wait_for_selector(f'main :text("Model: {NAME}")', timeout=120_000)  # downloaded, loaded, on Home
            page.wait_for_selector('main :text("pretrained weights from the local cache")', timeout=60_000)
            wait_idle(page)
            open_view(page, "Attention")
            page.wait_for_selector('.js-plotly-plot .gtitle:has-text("Top predictions")', timeout=120_000)
            wait_idle(page)
            assert_no_exception(page)
            bars = page.locator(".js-plotly-plot").filter(has=page.locator('.gtitle:has-text("Top predictions")'))
            labels = bars.first.locator(".ytick text").all_text_contents()
            from timm.data import ImageNetInfo

            names = {ImageNetInfo().index_to_description(i).split(",")[0][:32] for i in range(1000)}
            assert len(labels) == 5 and all(label.rsplit(" (", 1)[0] in names for label in labels), labels
            page.screenshot(path=str(output_dir / "download.png"))
            assert sum(r[0] == "GET" for r in hub.requests) >= 1
