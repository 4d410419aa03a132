"""The Attention view in headless Chromium, on an uploaded image: the maps draw, a click picks the query, and a new
image starts the query again in the controls and the maps alike."""

import numpy as np
import pytest
from PIL import Image

from browser import (assert_no_exception, choose, open_view, plot_layouts, query_controls, remove_upload, upload_image,
                     wait_for_plots, wait_idle)
from conftest import REPO

pytestmark = pytest.mark.browser


def _square_image(folder, name: str, colour: tuple[int, int, int], seed: int):
    rng = np.random.default_rng(seed)
    pixels = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    pixels[60:180, 100:220] = colour
    path = folder / name
    Image.fromarray(pixels).save(path)
    return path


def test_attention_view_on_an_uploaded_image(page, app_server, tmp_path, output_dir):
    path = _square_image(tmp_path, "blue-square.png", (40, 40, 255), seed=1)

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
    assert query_controls(page) == ([False, True], "30")

    # another image: the query starts again from the class token, in the controls and in every map at once
    upload_image(page, _square_image(tmp_path, "green-square.png", (40, 255, 40), seed=2))
    page.wait_for_selector('.js-plotly-plot .gtitle:has-text("Layer 12, mean of heads: attention of the class token")')
    page.wait_for_selector('.js-plotly-plot .gtitle:has-text("Rollout of the class token")')
    wait_idle(page)
    assert "green-square.png" in page.locator("main").inner_text()
    assert query_controls(page) == ([True, False], str(7 * 14 + 7))  # the centre patch of the 14x14 grid waits
    assert plot_layouts(page)[0]["shapes"] == 0  # no query patch outlined
    # and a click on patch 30 of the new image picks it again
    page.locator(".js-plotly-plot").first.locator(".scatterlayer .point").nth(30).click(force=True)
    page.wait_for_selector('.js-plotly-plot .gtitle:has-text("attention of patch 30")')
    wait_idle(page)
    assert query_controls(page) == ([False, True], "30")
    if (REPO / "models" / "starter-shapes.safetensors").exists():
        # a trained model on an image of its own domain, for the screenshot: the new model and image start the
        # query again from the class token
        choose(page, "Model", "starter-shapes (classifier)", where='[data-testid="stSidebar"]')
        remove_upload(page)
        page.locator('[data-testid="stSidebar"] label').filter(has_text="Shapes item").first.click()
        page.wait_for_selector('[data-testid="stSidebar"] [data-testid="stImage"]:has-text("64x64 px, from 64x64")')
        page.wait_for_selector('main [data-testid="stCaptionContainer"]:has-text("shapes test item 0")')
        page.wait_for_selector('.js-plotly-plot .gtitle:has-text("Layer 4, mean of heads: attention of the class token")')
        wait_for_plots(page, 6)
        assert_no_exception(page)
        assert query_controls(page) == ([True, False], str(4 * 8 + 4))
    page.set_viewport_size({"width": 1400, "height": 5200})  # the whole page in one screenshot
    wait_idle(page)
    page.screenshot(path=str(output_dir / "attention.png"))
