"""The Train view in headless Chromium: launch a fine-tune, watch its curve and its end, then look at the new
model's attention; meanwhile a second session explores the Patches view, and a reload finds the job again.
Then your own images: upload a zip of class folders, probe a model on them, and see its classes on Attention."""

import pytest

from browser import assert_no_exception, choose, open_app, open_view, plot_layouts, wait_idle
from conftest import running_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def train_server(output_dir, tmp_path_factory):
    """The app with its own jobs root: what it trains never lands in the repository's jobs/."""
    jobs = tmp_path_factory.mktemp("jobs")
    with running_app(output_dir / "streamlit-train-server.log", env={"VITVIZ_JOBS": str(jobs)}) as server:
        yield server


# The x values of a named trace of the training curves, read from the chart in the DOM.
CURVE_STEPS = ("(name => { for (const p of document.querySelectorAll('.js-plotly-plot')) "
               "for (const t of p.data || []) if (t.name === name) return Array.from(t.x); return []; })")
CURVE_POINTS = f"(name => {CURVE_STEPS}(name).length)"


def set_number(page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    wait_idle(page)


def test_train_watch_finish_then_explore_the_new_model(browser, train_server, output_dir):
    trainer = open_app(browser, train_server.url)
    open_view(trainer, "Train")
    choose(trainer, "Dataset", "digits")
    choose(trainer, "Start from", "random weights")
    set_number(trainer, "Steps", "40")
    set_number(trainer, "Batch size", "16")
    trainer.get_by_role("button", name="Launch").click()
    trainer.get_by_text("Launched my-classifier-1: started.", exact=True).wait_for()

    # a second session explores while the job runs: both answer
    explorer = open_app(browser, train_server.url)
    open_view(explorer, "Patches")
    explorer.locator(".js-plotly-plot").first.locator(".scatterlayer .point").nth(5).click(force=True)
    explorer.wait_for_selector('[data-testid="stMarkdownContainer"]:has-text("Patch 5 sits at row")')
    assert_no_exception(explorer)
    explorer.screenshot(path=str(output_dir / "train-second-session-patches.png"), full_page=True)

    # the curve appears by itself (the jobs panel refreshes without a click), and survives a reload
    trainer.wait_for_function(f"() => {CURVE_POINTS}('train loss') > 0")
    trainer.screenshot(path=str(output_dir / "train-running.png"), full_page=True)
    trainer.reload()
    trainer.wait_for_selector('h1:has-text("Train")')
    trainer.locator('[data-testid="stMarkdownContainer"]').filter(
        has_text="my-classifier-1 · Classification fine-tuning on digits · 40 steps").first.wait_for()

    # the end: the checkpoint is announced and offered in the sidebar's model picker
    trainer.get_by_text("my-classifier-1 is in the model picker in the sidebar.", exact=True).wait_for(timeout=300_000)
    trainer.wait_for_selector('[data-testid="stTable"]:has-text("accuracy")')  # its final metrics
    wait_idle(trainer)
    assert_no_exception(trainer)
    # every step logged (40 steps, one row each) and five evaluations after the one at step 0
    assert trainer.evaluate(f"() => {CURVE_POINTS}('train loss')") == 40
    assert trainer.evaluate(f"() => {CURVE_STEPS}('val accuracy')") == [0, 8, 16, 24, 32, 40]
    trainer.screenshot(path=str(output_dir / "train-finished.png"), full_page=True)

    # compare the new model's attention with another's, on the same image
    trainer.locator("main label").filter(has_text="Show two models' attention on the same image").first.click()
    wait_idle(trainer)
    choose(trainer, "Model A", "my-classifier-1 (classifier)")
    choose(trainer, "Model B", "vit_tiny_patch16_224 (random init)")
    comparison = trainer.locator(".js-plotly-plot").filter(has_text="my-classifier-1 minus").first
    comparison.wait_for()
    wait_idle(trainer)  # a rerun still under way may draw the figure again, detaching the one just found
    comparison.scroll_into_view_if_needed()
    assert trainer.locator(".js-plotly-plot").filter(has_text="my-classifier-1 minus").count() == 2  # rollout, head
    trainer.screenshot(path=str(output_dir / "train-compare.png"))
    choose(trainer, "Model", "my-classifier-1 (classifier)", where='[data-testid="stSidebar"]')

    # its attention, in the Attention view
    open_view(trainer, "Attention")
    trainer.wait_for_selector(".js-plotly-plot")
    wait_idle(trainer)
    assert_no_exception(trainer)
    main = trainer.locator("main").inner_text()
    assert "2 layers x 2 heads" in main and "4x4 patches" in main  # the micro model just trained, at 32 px
    assert len(plot_layouts(trainer)) >= 3
    trainer.screenshot(path=str(output_dir / "train-new-model-attention.png"), full_page=True)
    # and its card, with the metrics its training recorded
    trainer.locator('[data-testid="stSidebarNav"] a').filter(has_text="Home").first.click()
    trainer.wait_for_selector('h3:has-text("Model: my-classifier-1")')
    wait_idle(trainer)
    assert "Recorded metrics" in trainer.locator("main").inner_text()


# The y labels of every bar chart on the page (the Attention view's top predictions), read from the DOM.
BAR_LABELS = ("() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(p => (p.data || [])"
              ".filter(t => t.type === 'bar').flatMap(t => Array.from(t.y)))")


def test_upload_a_zip_probe_a_model_on_it_and_see_its_classes(browser, train_server, output_dir, tmp_path):
    from test_upload import make_zip, three_classes

    archive = tmp_path / "colours.zip"
    archive.write_bytes(make_zip({**three_classes((12, 12, 12)), "red/notes.txt": b"not an image"}))
    page = open_app(browser, train_server.url)
    open_view(page, "Train")
    page.locator('main [data-testid="stFileUploader"] input[type="file"]').set_input_files(str(archive))
    page.wait_for_selector('main :text("colours.zip")')
    wait_idle(page)
    page.get_by_role("button", name="Import").click()
    page.get_by_text("Imported colours: 36 images in 3 classes; 1 file skipped (listed below).", exact=True).wait_for()
    wait_idle(page)
    page.get_by_text("colours · 3 classes · 36 images (30 train, 6 validation)").first.click()  # open its card
    page.wait_for_selector('[data-testid="stExpander"] [data-testid="stImage"] img')
    wait_idle(page)
    assert page.locator('[data-testid="stExpander"] [data-testid="stImage"] img').count() == 12  # 4 per class
    page.screenshot(path=str(output_dir / "train-own-images.png"), full_page=True)

    # a linear probe of the starter classifier on them
    choose(page, "Dataset", "colours (your images")
    choose(page, "Start from", "starter-shapes (classifier)")
    page.get_by_text("Linear probe (the head alone, on frozen features: seconds)").click()
    wait_idle(page)
    name = page.get_by_label("Checkpoint name", exact=True)
    name.fill("colours-probe")
    name.press("Enter")
    wait_idle(page)
    set_number(page, "Steps", "60")
    page.get_by_role("button", name="Launch").click()
    page.get_by_text("Launched colours-probe: started.", exact=True).wait_for()
    page.get_by_text("colours-probe is in the model picker in the sidebar.", exact=True).wait_for(timeout=300_000)
    page.get_by_text("Its classes: blue, green, red.", exact=True).wait_for()
    wait_idle(page)
    assert_no_exception(page)
    # its classes' accuracy and confusion matrix (a job of another test may have drawn its own)
    assert page.locator(".js-plotly-plot").filter(has_text="Confusion matrix").filter(has_text="green").count() == 1
    page.screenshot(path=str(output_dir / "train-own-images-probed.png"), full_page=True)

    # the new model explains your classes
    choose(page, "Model", "colours-probe (classifier)", where='[data-testid="stSidebar"]')
    open_view(page, "Attention")
    page.wait_for_selector(".js-plotly-plot")
    wait_idle(page)
    assert_no_exception(page)
    assert sorted(page.evaluate(BAR_LABELS)) == ["blue (0)", "green (1)", "red (2)"]
    # the class maps, drawn further down, explain one of them
    page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot')).some(p => p.layout && "
                           "p.layout.title && (p.layout.title.text || '').includes('Relevance: '))")
    wait_idle(page)
    explained = [t.replace("<b>", "").replace("</b>", "") for t in (layout["title"] for layout in plot_layouts(page))
                 if "Gradient rollout: " in t or "Relevance: " in t]
    assert len(explained) == 2 and {t.split(": ")[1] for t in explained} <= {"blue", "green", "red"}
    page.screenshot(path=str(output_dir / "own-classes-attention.png"), full_page=True)
