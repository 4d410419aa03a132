"""The real app in headless Chromium: upload an image (the uploader is in the sidebar from the start), see it as the
model sees it, see the patch grid, visit every view; the model's warnings follow to every view."""

import numpy as np
import pytest
from PIL import Image

from browser import (assert_no_exception, choose, open_view, plot_layouts, query_controls, remove_upload, sidebar_text,
                     upload_image, wait_idle, wait_for_plots)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def uploaded_png(tmp_path_factory):
    rng = np.random.default_rng(0)
    pixels = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
    pixels[100:200, 150:250] = (255, 40, 40)
    path = tmp_path_factory.mktemp("upload") / "red-square.png"
    Image.fromarray(pixels).save(path)
    return path


RANDOM_WEIGHTS = "This model has random weights, as chosen (random init)"


def sidebar_preview(page) -> tuple[int, str]:
    """The width of the sidebar's picture of the image as the model sees it, and its caption."""
    image = page.locator('[data-testid="stSidebar"] [data-testid="stImage"]').first
    image.locator("img").wait_for()
    return image.locator("img").evaluate("img => img.naturalWidth"), image.inner_text()


def test_upload_then_patches_and_positions(page, app_server, uploaded_png, tmp_path, output_dir):
    page.goto(app_server.url)
    page.wait_for_selector('[data-testid="stSidebar"] h2:has-text("Model")')
    wait_idle(page)
    assert RANDOM_WEIGHTS not in sidebar_text(page)  # the default model is a trained one
    choose(page, "Model", "vit_tiny_patch16_224 (random init)", where='[data-testid="stSidebar"]')
    page.wait_for_selector(f'[data-testid="stSidebar"] [data-testid="stAlert"]:has-text("{RANDOM_WEIGHTS}")')
    upload_image(page, uploaded_png)  # straight into the uploader: no source to pick first
    page.wait_for_selector('[data-testid="stSidebar"] [data-testid="stImage"]:has-text("from 400x300")')
    assert sidebar_preview(page)[1] == "As the model sees it: 224x224 px, from 400x300"
    open_view(page, "Patches")
    page.wait_for_selector(".js-plotly-plot")
    assert_no_exception(page)
    assert "red-square.png" in page.locator("main").inner_text()
    assert RANDOM_WEIGHTS in sidebar_text(page)  # the warning is beside every view's output, not on Home alone
    layouts = plot_layouts(page)
    grid = [p for p in layouts if "Click a patch" in p["title"]]
    # vit_tiny_patch16_224: a 14x14 grid is 15 + 15 lines, plus the selected patch's outline
    assert grid and grid[0]["shapes"] == 15 + 15 + 1, layouts
    page.screenshot(path=str(output_dir / "patches.png"), full_page=True)

    # a click on a patch of the image selects it
    page.locator(".js-plotly-plot").first.locator(".scatterlayer .point").nth(20).click(force=True)
    page.wait_for_selector('[data-testid="stMarkdownContainer"]:has-text("Patch 20 sits at row 1, column 6")')
    wait_idle(page)
    assert query_controls(page)[1] == "20"

    # a panorama: the sidebar shows the middle the model keeps and says how much of the image that is, and the
    # patch selection starts again at the centre, in the number box and the figure alike
    panorama = tmp_path / "panorama.png"
    Image.new("RGB", (4000, 300), (30, 90, 200)).save(panorama)
    upload_image(page, panorama)
    page.wait_for_selector('[data-testid="stSidebar"] [data-testid="stImage"]:has-text("from 4000x300")')
    page.wait_for_selector('[data-testid="stMarkdownContainer"]:has-text("Patch 105 sits at row 7, column 7")')
    wait_idle(page)
    assert query_controls(page)[1] == "105"
    assert "The model sees only the middle 300x300 px of this 4000x300 image (8% of it)" in sidebar_text(page)
    assert "panorama.png" in page.locator("main").inner_text()
    upload_image(page, uploaded_png)
    page.wait_for_selector('[data-testid="stSidebar"] [data-testid="stImage"]:has-text("from 400x300")')
    wait_idle(page)
    assert "The model sees only" not in sidebar_text(page)

    open_view(page, "Positions")
    wait_for_plots(page, 5)  # learned and sin-cos (grid and enlarged position each), then the resampled grid
    assert_no_exception(page)
    titles = [layout["title"] for layout in plot_layouts(page)]
    assert sum("Each tile" in t for t in titles) == 2 and "14x14 resampled to 28x28" in titles[-1], titles
    page.screenshot(path=str(output_dir / "positions.png"), full_page=True)


def _tiny_jigsaw(folder) -> str:
    import torch

    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    arch = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0, pos_embed="none")
    torch.manual_seed(0)
    save_checkpoint(create_vit(arch, jigsaw_grid=(4, 4)), folder / "tiny-jigsaw",
                    dict(name="tiny-jigsaw", kind="jigsaw", architecture=arch, jigsaw=dict(grid=[4, 4])))
    return "tiny-jigsaw"


@pytest.fixture(scope="module")
def jigsaw_app(tmp_path_factory, output_dir):
    """The app with a jigsaw model in the picker: ``starter-jigsaw`` when installed, else a tiny one."""
    from conftest import running_app, starter_or_tiny

    name, env = starter_or_tiny("starter-jigsaw", tmp_path_factory.mktemp("models"), _tiny_jigsaw)
    with running_app(output_dir / "streamlit-jigsaw-server.log", env=env) as server:
        yield server, name


def test_jigsaw_view_reassembles_an_uploaded_image(browser, jigsaw_app, uploaded_png, output_dir):
    server, model_name = jigsaw_app
    context = browser.new_context(viewport={"width": 1400, "height": 2600})  # the step-through in the screenshot too
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        page.goto(server.url)
        wait_idle(page)
        page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
        page.get_by_role("option", name=f"{model_name} (jigsaw)").click()
        wait_idle(page)
        upload_image(page, uploaded_png)
        open_view(page, "Jigsaw")
        page.wait_for_selector('.js-plotly-plot .gtitle:has-text("put back by the model")')
        wait_idle(page)
        assert_no_exception(page)
        assert "red-square.png" in page.locator("main").inner_text()
        reassembly = page.locator(".js-plotly-plot").filter(has_text="put back by the model").first
        # original, shuffled, argmax and Hungarian reassemblies, each drawn as an image with its title
        assert reassembly.locator(".imagelayer image").count() == 4
        panel_titles = reassembly.locator(".annotation-text").all_text_contents()  # SVG text has no inner text
        assert panel_titles[:2] == ["Original", "Shuffled"]
        assert panel_titles[2].startswith("argmax: ") and panel_titles[3].startswith("Hungarian: ")
        titles = " ".join(layout["title"] for layout in plot_layouts(page))
        assert "This puzzle" in titles and "How sure the model is" in titles
        # a photo the starter model never trained on: the screenshot shows a reassembly worth looking at
        remove_upload(page)
        choose(page, "Sample photo", "chelsea", where='[data-testid="stSidebar"]')
        page.wait_for_selector('[data-testid="stCaptionContainer"]:has-text("sample photo: chelsea")')
        wait_idle(page)
        assert_no_exception(page)
        page.screenshot(path=str(output_dir / "jigsaw.png"), full_page=True)
    finally:
        context.close()
