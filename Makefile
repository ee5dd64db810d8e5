# Two commands do all set-up: `make run` (the app on bundled data) and `make test` (every test).
# Both create .venv on first use and reuse it; torch's CPU build is installed first so that
# nothing pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
TORCH := torch==2.13.0
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test bench evaluate browser clean

$(VENV)/.core: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH)
	$(PIP) -e .
	touch $@

# Everything the tests need: dev tools and every optional extra (llama-cpp-python compiles
# from source on first install, about 4 minutes).
$(VENV)/.full: $(VENV)/.core
	$(PIP) -e '.[dev,local,ray,mlflow,vectordb]'
	touch $@

# .streamlit/config.toml turns Streamlit's file watcher off (it took a core while runs embed).
run: $(VENV)/.core
	$(VENV)/bin/streamlit run app.py

evaluate: $(VENV)/.core
	$(PY) -m workbench evaluate --dataset cranfield --config configs/bm25.toml --config configs/dense.toml --config configs/hybrid.toml

# Debian's chromium drives the browser tests and kaleido's PNG export (never `playwright install`).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "chromium is missing: install Debian's chromium package (apt-get install chromium)"; exit 1; }

test: $(VENV)/.full browser
	$(PY) -m pytest

bench: $(VENV)/.full
	for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .cache .pytest_cache
