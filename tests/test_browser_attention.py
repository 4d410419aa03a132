"""The Attention view in headless Chromium, on an uploaded image: the maps draw and a click picks the query."""

import numpy as np
import pytest
from PIL import Image

from browser import assert_no_exception, choose, open_view, plot_layouts, upload_image, wait_for_plots, wait_idle
from conftest import REPO

pytestmark = pytest.mark.browser


def test_attention_view_on_an_uploaded_image(page, app_server, tmp_path, output_dir):
    rng = np.random.default_rng(1)
    pixels = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    pixels[60:180, 100:220] = (40, 40, 255)
    path = tmp_path / "blue-square.png"
    Image.fromarray(pixels).save(path)

    page.goto(app_server.url)
    wait_idle(page)
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.locator('[role="option"]').filter(has_text="vit_tiny_patch16_224 (random init)").first.click()
    wait_idle(page)
    upload_image(page, path)
    open_view(page, "Attention")
    page.wait_for_selector('.js-plotly-plot .gtitle:has-text("attention of the class token")')
    wait_idle(page)
    assert_no_exception(page)
    assert "blue-square.png" in page.locator("main").inner_text()
    for last in ("Relevance: ", "Mean attention distance per head"):  # charts are drawn one by one
        page.wait_for_selector(f'.js-plotly-plot .gtitle:has-text("{last}")')
    titles = [p["title"] for p in plot_layouts(page)]
    for part in ("Layer 12, mean of heads", "Attention of the class token, one panel per head", "Rollout of the class token",
                 "Gradient rollout: ", "Relevance: ", "Mean attention distance per head"):
        assert any(part in t for t in titles), (part, titles)

    # a click on patch 30 of the first map makes it the query of every map
    page.locator(".js-plotly-plot").first.locator(".scatterlayer .point").nth(30).click(force=True)
    page.wait_for_selector('.js-plotly-plot .gtitle:has-text("attention of patch 30")')
    page.wait_for_selector('.js-plotly-plot .gtitle:has-text("Rollout of patch 30")')
    wait_idle(page)
    assert_no_exception(page)
    if (REPO / "models" / "starter-shapes.safetensors").exists():
        # a trained model on an image of its own domain, asked from the class token, for the screenshot
        choose(page, "Model", "starter-shapes (classifier)", where='[data-testid="stSidebar"]')
        page.locator('[data-testid="stSidebar"] label').filter(has_text="Shapes item").first.click()
        wait_idle(page)
        page.locator("main label").filter(has_text="Class token").first.click()
        page.wait_for_selector('.js-plotly-plot .gtitle:has-text("Layer 4, mean of heads: attention of the class token")')
        wait_for_plots(page, 6)
        assert_no_exception(page)
    page.set_viewport_size({"width": 1400, "height": 5200})  # the whole page in one screenshot
    wait_idle(page)
    page.screenshot(path=str(output_dir / "attention.png"))
