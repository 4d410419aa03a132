# Two commands: `make run` serves the app, `make test` runs every test. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

.PHONY: run test browser bench clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

run: $(STAMP)
	$(PY) -m streamlit run app.py

# Browser tests need Debian's chromium; it is installed here when missing and we are root.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian's chromium for the browser tests..."; \
		(apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)); \
	else \
		echo "The browser tests need Chromium at /usr/bin/chromium. Install it with: sudo apt-get install -y chromium"; \
		exit 1; \
	fi

# One pytest worker per core (pytest-xdist), each test file on one worker: its module's app server and jobs stay
# together. A plain `pytest` runs serially.
test: $(STAMP) browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n auto --dist loadfile

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) bench/attention.py
	HF_HUB_OFFLINE=1 $(PY) bench/inside.py
	HF_HUB_OFFLINE=1 $(PY) bench/attributions.py
	HF_HUB_OFFLINE=1 $(PY) bench/jigsaw_accuracy.py
	HF_HUB_OFFLINE=1 $(PY) bench/train_throughput.py
	HF_HUB_OFFLINE=1 $(PY) bench/finetune_modes.py

clean:
	rm -rf $(VENV) .pytest_cache test-output
