# Two commands for a fresh clone: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output

.PHONY: demo test fuzz bench docs lint format validate clean system-deps

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[testing]"
	@touch $(STAMP)

# Xvfb and the xcb libraries Qt needs, installed through apt when we are root and they are missing.
system-deps:
	@if ! command -v Xvfb >/dev/null 2>&1 || ! ldconfig -p | grep -q libxcb-icccm; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Xvfb and Qt's xcb libraries with apt"; \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0 \
	      libxcb-randr0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 libegl1 \
	      libgl1 libdbus-1-3 libfontconfig1 >/dev/null; \
	  else echo "warning: Xvfb missing and not root: viewer tests will be skipped or fail"; fi; \
	fi

demo: $(STAMP) system-deps
	$(PY) -m scripts.demo --out $(DEMO_DIR)

test: $(STAMP) system-deps
	$(PY) -m pytest -p no:cacheprovider

# The fuzz tests with many more examples than `make test` runs (FUZZ_PROFILE=ci for a quick look).
FUZZ_PROFILE ?= fuzz
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=$(FUZZ_PROFILE) $(PY) -m pytest -p no:cacheprovider tests/test_fuzz.py

bench: $(STAMP) system-deps
	$(PY) -m benchmarks

docs: $(STAMP) system-deps
	$(PY) -m scripts.make_screenshots

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks scripts
	$(VENV)/bin/ruff check --fix src tests benchmarks scripts

validate: $(STAMP)
	$(VENV)/bin/npe2 validate napari-crystal

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache build src/*.egg-info
