"""The 16-pixel starter models in headless Chromium, on an uploaded photo: the Jigsaw view, opened on a classifier,
switches in one click to the jigsaw model that places the most patches and reassembles its puzzle, and
starter-jigsaw-16 its 7x7 one; the Attention view draws starter-shapes-16's maps of the same photo. The screenshots
show both views with the 16-pixel models."""

import pytest

from browser import assert_no_exception, choose, open_view, plot_layouts, upload_image, wait_idle
from conftest import REPO

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (REPO / "models" / "starter-jigsaw-16.safetensors").exists(),
                       reason="no starter-*-16 models in models/ (python -m training quickstart --patch-size 16)"),
]


@pytest.fixture(scope="module")
def uploaded_photo(tmp_path_factory):
    """A photo none of the models trained on (a held-out sample photo), uploaded as a JPEG file."""
    from vitviz.samples import load_sample

    path = tmp_path_factory.mktemp("upload") / "coffee.jpg"
    load_sample("coffee").save(path, quality=92)
    return path


def test_jigsaw_switch_and_attention_on_an_uploaded_photo(browser, app_server, uploaded_photo, output_dir):
    from vitviz.checkpoints import read_sidecar
    from vitviz.jigsaw import best_jigsaw_checkpoint

    best = best_jigsaw_checkpoint()
    context = browser.new_context(viewport={"width": 1400, "height": 2600})
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        page.goto(app_server.url)
        wait_idle(page)
        choose(page, "Model", "starter-shapes-16 (classifier)", where='[data-testid="stSidebar"]')
        upload_image(page, uploaded_photo)
        open_view(page, "Jigsaw")
        page.wait_for_selector('main [data-testid="stAlert"]:has-text("has no jigsaw head")')
        assert f"{best.ref} puts back the most patches" in page.locator("main").inner_text()
        page.get_by_role("button", name=f"Switch to {best.ref}").click()
        page.wait_for_selector('.js-plotly-plot .gtitle:has-text("put back by the model")')
        wait_idle(page)
        assert_no_exception(page)
        main = page.locator("main").inner_text()
        gh, gw = read_sidecar(best.path)["jigsaw"]["grid"]
        assert "coffee.jpg" in main and f"of {gh * gw} patches" in main
        assert "Switch to" not in main  # the best jigsaw model is the one in use now

        # the 7x7 model by hand: its puzzle, and a one-click way back to the best one if it is not that one
        choose(page, "Model", "starter-jigsaw-16 (jigsaw)", where='[data-testid="stSidebar"]')
        page.wait_for_selector('main [data-testid="stCaptionContainer"]:has-text("of 49 patches")')
        wait_idle(page)
        assert_no_exception(page)
        if best.ref != "starter-jigsaw-16":
            page.get_by_role("button", name=f"Switch to {best.ref}, which puts back about").wait_for()
        page.get_by_text("step 0 of").first.wait_for()  # the step-through, drawn last
        wait_idle(page)
        page.screenshot(path=str(output_dir / "jigsaw-16.png"), full_page=True)

        choose(page, "Model", "starter-shapes-16 (classifier)", where='[data-testid="stSidebar"]')
        open_view(page, "Attention")
        for title in ("attention of the class token", "Relevance: "):
            page.wait_for_selector(f'.js-plotly-plot .gtitle:has-text("{title}")')
        wait_idle(page)
        assert_no_exception(page)
        assert "coffee.jpg" in page.locator("main").inner_text()
        assert any("Relevance: " in layout["title"] for layout in plot_layouts(page))
        page.screenshot(path=str(output_dir / "attention-16.png"), full_page=True)
    finally:
        context.close()
