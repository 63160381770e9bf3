# Two commands: `make book` builds the site, `make test` runs the tests. Both install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SYSTEM_PACKAGES := fonts-noto-cjk chromium chromium-driver

.PHONY: book test check-site install lock lint clean

book: $(STAMP)
	$(BIN)/phasebook build

test: $(STAMP)
	$(BIN)/ruff check lib tests notebooks
	$(BIN)/python -m pytest

# Every page of build/site in headless Chromium (run after `make book`): console errors, requests
# leaving localhost or failing, language switches that do not round-trip.
check-site: $(STAMP)
	$(BIN)/phasebook check-site

install: $(STAMP)

# System packages (CJK font for figure labels, Chromium for the site tests) when we are root;
# then a virtual environment: the CPU build of torch first (a looser pin would pull a CUDA
# build of several GB), then the locked dependencies, then this package in editable mode.
$(STAMP): pyproject.toml lib/requirements.lock
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); }; \
	else echo "not root: make sure $(SYSTEM_PACKAGES) are installed"; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r lib/requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# Re-pin every dependency (run after changing pyproject.toml's dependencies).
lock:
	rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install -q torch==2.13.0
	build/lock-venv/bin/pip install -q -e ".[test]"
	build/lock-venv/bin/pip freeze --exclude-editable | grep -v "^phasebook" > lib/requirements.lock
	rm -rf build/lock-venv

clean:
	rm -rf build
