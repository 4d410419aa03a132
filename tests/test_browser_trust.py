"""The Trust view in headless Chromium, on a shapes item: the randomisation figure first, then the scores beside
the baselines, ROAD beside deletion and insertion, and the agreement matrix.

With the bundled ``starter-shapes`` classifier when it is installed, else a tiny random one with the shapes classes.
"""

import pytest

from browser import assert_no_exception, choose, open_app, open_view, plot_layouts, wait_for_plots, wait_idle
from test_browser_attributions import shapes_app  # noqa: F401  (the fixture: the app on a shapes classifier)

pytestmark = pytest.mark.browser


def test_the_sanity_check_figure_and_its_company(browser, shapes_app, output_dir):  # noqa: F811
    server, model_name = shapes_app
    page = open_app(browser, server.url)
    try:
        choose(page, "Model", f"{model_name} (classifier)", where='[data-testid="stSidebar"]')
        page.locator('[data-testid="stSidebar"] label').filter(has_text="Shapes item").first.click()
        wait_idle(page)
        open_view(page, "Trust")
        wait_for_plots(page, 4)
        assert_no_exception(page)
        titles = [layout["title"].replace("<b>", "").replace("</b>", "") for layout in plot_layouts(page)]
        assert titles[0].startswith("Cascading model randomisation"), titles
        assert titles[2].startswith("Target probability as patches are deleted") and titles[3].startswith("Rank"), titles
        # the sanity-check figure: one line per default method, and its legend names them
        figure = page.locator(".js-plotly-plot").first
        legend = figure.locator(".legendtext").all_text_contents()
        assert legend == ["Saliency", "Attention rollout", "Relevance", "Grad-CAM", "EigenCAM"], legend
        ticks = figure.locator(".xtick text").all_text_contents()
        assert ticks[0] == "trained" and any("embeddings" in t for t in ticks), ticks
        main = page.locator("main").inner_text()
        assert "Does the map change when the model does?" in main and "Random (chance)" in main
        page.set_viewport_size({"width": 1400, "height": 1100})
        figure.scroll_into_view_if_needed()
        wait_idle(page)
        page.screenshot(path=str(output_dir / "trust.png"))
    finally:
        page.context.close()
