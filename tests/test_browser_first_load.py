"""A fresh server's first page in headless Chromium: the first menu the sidebar draws is the app's own (never the
files of pages/ in lower case), and no page asks another host for anything (a favicon, a font)."""

import pytest

from browser import open_view, wait_idle
from conftest import running_app

pytestmark = pytest.mark.browser

MENU = ["Home", "Patches", "Positions", "Attention", "Attributions", "Trust", "Layers", "Jigsaw", "Train"]
# Records every distinct list of links the sidebar's menu shows, from the first paint on.
WATCH_MENU = """
window.__menus = [];
new MutationObserver(() => {
  const nav = document.querySelector('[data-testid="stSidebarNav"]');
  if (!nav) return;
  const links = Array.from(nav.querySelectorAll('a')).map(a => a.innerText.split('\\n').pop().trim());
  if (JSON.stringify(links) !== JSON.stringify(window.__menus[window.__menus.length - 1])) window.__menus.push(links);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def test_the_first_menu_is_the_real_one_and_nothing_leaves_the_machine(browser, output_dir):
    # its own server: only the first session of a fresh server was shown the files of pages/
    with running_app(output_dir / "streamlit-first-load-server.log") as server:
        context = browser.new_context(viewport={"width": 1400, "height": 1600})
        requests, errors = [], []
        context.on("request", lambda request: requests.append(request.url))
        context.add_init_script(WATCH_MENU)
        page = context.new_page()
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.set_default_timeout(120_000)
        try:
            page.goto(server.url)
            page.wait_for_selector('[data-testid="stSidebar"] h2:has-text("Model")')
            wait_idle(page)
            menus = page.evaluate("() => window.__menus")
            assert menus and all(menu == MENU for menu in menus), menus
            for view in ("Patches", "Attention"):
                open_view(page, view)
            elsewhere = sorted({url for url in requests if not url.startswith(server.url)})
            assert elsewhere == [], elsewhere
            assert errors == [], errors
            icon = page.evaluate("() => document.querySelector('link[rel~=icon]').href")
            assert icon.startswith(server.url), icon
        finally:
            context.close()
