"""The Layers view in headless Chromium on an uploaded photo: every section draws, and a click on the knock-out map
opens that block's and head's attention."""

import pytest

from browser import (assert_no_exception, choose, open_view, plot_layouts, remove_upload, upload_image, wait_for_plots,
                     wait_idle)
from conftest import REPO

pytestmark = pytest.mark.browser

STARTER = "starter-shapes"


def click_cell(page, index: int, expected_title: str) -> None:
    """Click knock-out cell ``index`` until the page answers with ``expected_title`` (a click that lands while
    plotly redraws the chart after a rerun is lost, so it is repeated)."""
    knockout = page.locator(".js-plotly-plot").filter(has=page.locator('.gtitle:has-text("Change in p(")'))
    for _ in range(4):
        wait_idle(page)
        knockout.locator(".scatterlayer .point").nth(index).click(force=True)
        try:
            page.wait_for_selector(f'.js-plotly-plot .gtitle:has-text("{expected_title}")', timeout=30_000)
            return
        except Exception:  # playwright's TimeoutError: click again
            continue
    raise AssertionError(f"four clicks on knock-out cell {index} never showed {expected_title!r}")


def test_layers_view_on_an_uploaded_photo(page, app_server, tmp_path, output_dir):
    from vitviz.samples import load_sample

    path = tmp_path / "coffee-photo.jpg"
    load_sample("coffee").save(path, quality=90)
    trained = (REPO / "models" / f"{STARTER}.safetensors").exists()
    model, depth, heads = (f"{STARTER} (classifier)", 4, 4) if trained else ("vit_tiny_patch16_224 (random init)", 12, 3)

    page.goto(app_server.url)
    page.wait_for_selector('[data-testid="stSidebar"] h2:has-text("Model")')
    wait_idle(page)
    choose(page, "Model", model, where='[data-testid="stSidebar"]')
    upload_image(page, path)
    open_view(page, "Layers")
    for title in ("Logit lens", f"After block {depth}: the class each patch is read as", "principal components 1-3",
                  "Token norms after every block", "Attention flow to the class token", "Flow against rollout",
                  "Change in p(", f"Block {depth}, head 1: attention of the class token"):
        page.wait_for_selector(f'.js-plotly-plot .gtitle:has-text("{title}")')  # charts are drawn one by one
    wait_idle(page)
    assert_no_exception(page)
    assert "coffee-photo.jpg" in page.locator("main").inner_text()

    # a click on the cell of block 2, head 3 moves the shared block control and shows that head's attention
    click_cell(page, 1 * heads + 2, "Block 2, head 3: attention of the class token")
    page.wait_for_selector('.js-plotly-plot .gtitle:has-text("After block 2: the class each patch is read as")')
    wait_idle(page)
    assert_no_exception(page)
    titles = [p["title"] for p in plot_layouts(page)]
    assert any("Block 2: principal components" in t for t in titles), titles

    if trained:  # the trained model on an image of its own domain, its last block's first head, for the screenshot
        remove_upload(page)  # an uploaded file is the image until it is removed
        page.locator('[data-testid="stSidebar"] label').filter(has_text="Shapes item").first.click()
        page.wait_for_selector('main :text("shapes test item 0")')
        wait_for_plots(page, 13)
        click_cell(page, (depth - 1) * heads, f"Block {depth}, head 1: attention of the class token")
        page.wait_for_selector(f'.js-plotly-plot .gtitle:has-text("After block {depth}: the class each patch")')
        wait_idle(page)
        assert_no_exception(page)
    page.set_viewport_size({"width": 1400, "height": 5800})  # the whole page in one screenshot
    page.mouse.move(0, 0)  # no chart's hover toolbar in the picture
    page.evaluate("() => document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop = 0; })")
    wait_idle(page)
    page.screenshot(path=str(output_dir / "layers.png"))
