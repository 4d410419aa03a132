"""The real app in headless Chromium: upload an image, see the patch grid, visit every view."""

import numpy as np
import pytest
from PIL import Image

from browser import assert_no_exception, open_view, plot_layouts, upload_image, wait_idle

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def uploaded_png(tmp_path_factory):
    rng = np.random.default_rng(0)
    pixels = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
    pixels[100:200, 150:250] = (255, 40, 40)
    path = tmp_path_factory.mktemp("upload") / "red-square.png"
    Image.fromarray(pixels).save(path)
    return path


def test_upload_then_patches_and_positions(page, app_server, uploaded_png, output_dir):
    page.goto(app_server.url)
    wait_idle(page)
    upload_image(page, uploaded_png)
    open_view(page, "Patches")
    page.wait_for_selector(".js-plotly-plot")
    assert_no_exception(page)
    assert "red-square.png" in page.locator("main").inner_text()
    layouts = plot_layouts(page)
    grid = [p for p in layouts if "Click a patch" in p["title"]]
    # vit_tiny_patch16_224: a 14x14 grid is 15 + 15 lines, plus the selected patch's outline
    assert grid and grid[0]["shapes"] == 15 + 15 + 1, layouts
    page.screenshot(path=str(output_dir / "patches.png"), full_page=True)

    # a click on a patch of the image selects it
    page.locator(".js-plotly-plot").first.locator(".scatterlayer .point").nth(20).click(force=True)
    page.wait_for_selector('[data-testid="stMarkdownContainer"]:has-text("Patch 20 sits at row 1, column 6")')
    wait_idle(page)

    open_view(page, "Positions")
    page.wait_for_selector(".js-plotly-plot")
    assert_no_exception(page)
    assert len(plot_layouts(page)) >= 3
    page.screenshot(path=str(output_dir / "positions.png"), full_page=True)
