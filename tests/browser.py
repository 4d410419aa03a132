"""Small helpers for driving the app in Chromium: wait for Streamlit, pick a page, upload an image."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout


def wait_idle(page, timeout: float = 120_000) -> None:
    """Wait until Streamlit has finished running the script (no running indicator)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]') && !document.querySelector("
        "'[data-testid=\"stApp\"][data-test-script-state=\"running\"]')", timeout=timeout
    )
    page.wait_for_timeout(300)


def open_view(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click()
    page.wait_for_selector(f'h1:has-text("{title}")')
    wait_idle(page)


def upload_image(page, path: Path) -> None:
    """Upload ``path`` through the sidebar's uploader, which is always there: no source to pick first."""
    # A rerun that starts just as the file is set can redraw the uploader and drop it: set it again then.
    for attempt in range(3):
        page.locator('[data-testid="stSidebar"] [data-testid="stFileUploader"] input[type="file"]').set_input_files(
            str(path))
        try:
            page.wait_for_selector(f'[data-testid="stSidebar"] :text("{path.name}")', timeout=30_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            wait_idle(page)
    wait_idle(page)


def remove_upload(page) -> None:
    """Remove the uploaded file (its x in the uploader): the sidebar's bundled images are in use again."""
    page.locator('[data-testid="stSidebar"] [data-testid="stFileChipDeleteBtn"] button').first.click()
    page.wait_for_selector('[data-testid="stSidebar"] [data-testid="stFileChip"]', state="detached")
    wait_idle(page)


def wait_for_plots(page, count: int) -> None:
    """Wait until ``count`` plotly charts are drawn (Streamlit draws a page's charts one by one)."""
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {count}")
    wait_idle(page)


def assert_no_exception(page) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text()


def plot_layouts(page) -> list[dict]:
    """The layout of every plotly chart on the page (shapes, titles), read from the DOM."""
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => ({"
        "title: p.layout && p.layout.title ? (p.layout.title.text || '') : '',"
        "shapes: p.layout && p.layout.shapes ? p.layout.shapes.length : 0}))"
    )


def query_controls(page) -> tuple[list[bool], str]:
    """The main area's first radio (which options are checked) and first number box (its text), as the browser
    shows them."""
    radios = page.locator('main [data-testid="stRadio"] input').evaluate_all("els => els.map(e => e.checked)")
    return radios, page.locator('main [data-testid="stNumberInput"] input').first.input_value()


def sidebar_text(page) -> str:
    return page.locator('[data-testid="stSidebar"]').inner_text()


def open_app(browser, url: str):
    """A new browser session on the app, once the app's own sidebar is drawn."""
    tab = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
    tab.set_default_timeout(120_000)
    tab.goto(url)
    tab.wait_for_selector('[data-testid="stSidebar"] h2:has-text("Model")')
    wait_idle(tab)
    return tab


def choose(page, label: str, option: str, where: str = "main") -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``: typed, so that a long list needs no scrolling."""
    box = page.locator(f'{where} [data-testid="stSelectbox"]').filter(has_text=label).first
    if option in box.inner_text():
        return  # already chosen: a click would only open the list
    box.click()
    box.locator("input").fill(option)
    page.locator('[role="option"]').filter(has_text=option).first.click()
    wait_idle(page)
