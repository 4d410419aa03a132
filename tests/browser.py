"""Small helpers for driving the app in Chromium: wait for Streamlit, pick a page, upload an image."""

from __future__ import annotations

from pathlib import Path


def wait_idle(page, timeout: float = 120_000) -> None:
    """Wait until Streamlit has finished running the script (no running indicator)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout
    )
    page.wait_for_timeout(300)


def open_view(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click()
    page.wait_for_selector(f'h1:has-text("{title}")')
    wait_idle(page)


def upload_image(page, path: Path) -> None:
    page.locator('[data-testid="stSidebar"] label').filter(has_text="Upload").first.click()
    wait_idle(page)
    page.locator('[data-testid="stSidebar"] [data-testid="stFileUploader"] input[type="file"]').set_input_files(str(path))
    page.wait_for_selector(f'[data-testid="stSidebar"] :text("{path.name}")')
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
