"""Home and the Attributions view in headless Chromium, on a shapes item with its object mask.

With the bundled ``starter-shapes`` classifier when it is installed, else a tiny random one with the
shapes classes (the view's figures and table are the same; only the maps mean less).
"""

import pytest

from browser import assert_no_exception, choose, open_app, open_view, plot_layouts, wait_for_plots, wait_idle
from conftest import running_app, starter_or_tiny

pytestmark = pytest.mark.browser


def _tiny_shapes(folder) -> str:
    import torch

    from vitviz.data import SHAPES_CLASSES
    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    arch = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=len(SHAPES_CLASSES))
    torch.manual_seed(0)
    save_checkpoint(create_vit(arch), folder / "tiny-shapes",
                    dict(name="tiny-shapes", kind="classifier", architecture=arch, class_names=list(SHAPES_CLASSES)))
    return "tiny-shapes"


@pytest.fixture(scope="module")
def shapes_app(tmp_path_factory, output_dir):
    name, env = starter_or_tiny("starter-shapes", tmp_path_factory.mktemp("models"), _tiny_shapes)
    with running_app(output_dir / "streamlit-shapes-server.log", env=env) as server:
        yield server, name


def test_home_card_then_attributions_on_a_shapes_item(browser, shapes_app, output_dir):
    server, model_name = shapes_app
    page = open_app(browser, server.url)
    try:
        choose(page, "Model", f"{model_name} (classifier)", where='[data-testid="stSidebar"]')
        page.wait_for_selector(f'h3:has-text("Model: {model_name}")')
        assert_no_exception(page)
        assert "circle" in page.locator("main").inner_text()  # the card lists its classes
        page.screenshot(path=str(output_dir / "home.png"), full_page=True)

        page.locator('[data-testid="stSidebar"] label').filter(has_text="Shapes item").first.click()
        wait_idle(page)
        open_view(page, "Attributions")
        wait_for_plots(page, 3)  # the maps, the baselines, then the deletion and insertion curves
        assert_no_exception(page)
        main = page.locator("main").inner_text()
        assert "shapes test item 0" in main and "On the object?" in main
        titles = [layout["title"] for layout in plot_layouts(page)]
        assert "Evidence for " in titles[0] and "deleted" in titles[2] and len(titles) == 3, titles
        assert "Where the curves start and end" in titles[1], titles
        maps = page.locator(".js-plotly-plot").first.locator(".annotation-text").all_text_contents()
        for method in ("Integrated Gradients", "Saliency", "Occlusion", "Attention rollout", "Relevance"):
            assert any(method in text for text in maps), (method, maps)
        # one row per method in the table, with the localization columns a shapes item allows
        table = page.locator('[data-testid="stDataFrame"]')
        table.wait_for()
        assert table.count() == 1
        page.set_viewport_size({"width": 1400, "height": 2700})  # the app scrolls inside its own frame
        wait_idle(page)
        page.screenshot(path=str(output_dir / "attributions.png"))
    finally:
        page.context.close()
