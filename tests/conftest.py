"""Shared test set-up: never touch the network, keep torch small on this 2-core machine."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("VITVIZ_DEVICE", "cpu")

import pytest  # noqa: E402
import torch  # noqa: E402

# Under pytest-xdist (make test: one worker per core) the cores are shared among the workers.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, at most 4 (each may run an app server and Chromium)."""
    return max(1, min(4, os.cpu_count() or 1))


def worker_suffix() -> str:
    """``-gw0`` and so on under pytest-xdist, else empty: for files that every worker writes."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return f"-{worker}" if worker else ""


@pytest.fixture(scope="session")
def output_dir() -> "os.PathLike":
    """Where tests leave files worth looking at (screenshots); kept after the run."""
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "test-output"
    path.mkdir(exist_ok=True)
    return path


# --- the real app in a real browser -------------------------------------------------------------

import contextlib  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``streamlit run app.py`` on a free loopback port, its log kept for traceback checks."""

    def __init__(self, log_path: Path, env: dict | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2)
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"streamlit did not start:\n{log_path.read_text()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


@contextlib.contextmanager
def running_app(log_path: Path, env: dict | None = None):
    """An ``AppServer`` for the ``with`` block; afterwards, its log must hold no traceback."""
    server = AppServer(log_path, env)
    try:
        yield server
    finally:
        server.stop()
    assert "Traceback" not in log_path.read_text(), "the app server logged a traceback"


def starter_or_tiny(starter: str, folder: Path, make_tiny) -> tuple[str, dict]:
    """The bundled ``starter`` model when installed, else the one ``make_tiny(folder)`` saves there (it returns its
    name): the name to pick in the app, and the environment that puts it in the picker."""
    if (REPO / "models" / f"{starter}.safetensors").exists():
        return starter, {}
    return make_tiny(folder), {"VITVIZ_MODELS": str(folder)}


@pytest.fixture(scope="session")
def app_server(output_dir):
    with running_app(output_dir / f"streamlit-server{worker_suffix()}.log") as server:
        yield server


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is needed for the browser tests: apt-get install -y chromium (make test does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, app_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    tab = context.new_page()
    tab.set_default_timeout(90_000)
    yield tab
    context.close()
