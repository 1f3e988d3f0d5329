# sandboxd developer entry points. See README.md.
#
#   make demo    install the three distributions (editable) and run `python -m sandboxd demo`
#   make test    install test requirements + the distributions, lint, type-check, run pytest
#   make lint    ruff check, ruff format --check, mypy (installs like `make test`)
#   make bench   run the pool benchmark (`python -m bench pool`)
#
# Everything installs into the environment of $(PYTHON) (override: `make test PYTHON=...`).
# Installs are remembered by stamp files under .make/ (one set per interpreter), so a second
# `make test` skips pip entirely unless requirements-dev.txt or a pyproject.toml changed, or
# the editable installs no longer point at this checkout (scripts/editable_installed.py).

PYTHON ?= python3
PIP := $(PYTHON) -m pip --disable-pip-version-check

# One stamp directory per interpreter environment, so switching PYTHON reinstalls.
PY_ENV_ID := $(shell $(PYTHON) -c 'import hashlib, sys; print(hashlib.sha256(sys.prefix.encode()).hexdigest()[:12])')
ifeq ($(PY_ENV_ID),)
$(error cannot run $(PYTHON); set PYTHON to a Python >= 3.11 interpreter)
endif
STAMPS := .make/$(PY_ENV_ID)

DISTRIBUTIONS := pool/pyproject.toml client/pyproject.toml pyproject.toml

# Reinstall the distributions if they are missing or installed from another checkout.
ifneq ($(shell $(PYTHON) -I scripts/editable_installed.py 2>/dev/null && echo ok),ok)
$(STAMPS)/packages: FORCE
endif

.PHONY: demo test lint bench system-deps install install-dev clean FORCE

demo: system-deps install
	$(PYTHON) -m sandboxd demo

test: lint
	$(PYTHON) -m pytest -q tests

lint: install-dev
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

bench: system-deps install
	$(PYTHON) -m bench pool

# Debian packages (node, libseccomp); checks first, calls apt-get only when something is missing.
system-deps:
	bash scripts/install-system-deps.sh

install: $(STAMPS)/packages
install-dev: system-deps $(STAMPS)/packages $(STAMPS)/dev-requirements

# The three distributions, editable, in one pip call so that the local sandboxd-pool and
# sandboxd-client satisfy the daemon's requirements.
$(STAMPS)/packages: $(DISTRIBUTIONS)
	$(PIP) install -e ./pool -e ./client -e .
	@mkdir -p $(@D) && touch $@

$(STAMPS)/dev-requirements: requirements-dev.txt
	$(PIP) install -r requirements-dev.txt
	@mkdir -p $(@D) && touch $@

FORCE:

clean:
	rm -rf .make build .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.egg-info' -type d -prune -exec rm -rf {} +
