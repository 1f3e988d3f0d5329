# sandboxd developer entry points. See README.md and docs/development.md.
#
#   make demo    install the three distributions (editable) and run `python -m sandboxd demo`
#   make test    install test requirements + the distributions, lint, type-check, run pytest
#   make lint    ruff check, ruff format --check, mypy (installs like `make test`)
#   make bench   run the pool benchmark (`python -m bench pool`)
#   make lock    re-resolve requirements.lock and requirements-dev.lock (exact pins, hashes)
#
# Everything installs into the environment of $(PYTHON) (override: `make test PYTHON=...`).
# Every third-party package comes from requirements.lock (run time; `make demo`) or
# requirements-dev.lock (what `make test` adds): exact versions with sha256 hashes, installed
# with --require-hashes. The three distributions of this checkout are installed editable on
# top with --no-deps, so nothing outside the locks is ever resolved.
# Installs are remembered by stamp files under .make/ (one set per interpreter), so a second
# `make test` skips pip entirely unless a lock or a pyproject.toml changed, or
# the editable installs no longer point at this checkout (scripts/editable_installed.py).
# `make test`/`make lint` also `npm ci` the e2e Node.js client (tests/e2e/node_client) and the
# npm packages of the egress tests (tests/egress/node_packages) when a package-lock.json changes.
# `make test` runs, as root, every suite; tests/cgroup_v2 boots a cgroup v2 VM (qemu) whose
# kernel and root filesystem it builds from Debian's packages on first use and caches under
# /var/cache/sandboxd-test/cgroup-v2 (docs/development.md, "cgroup v2 in the test suite").

PYTHON ?= python3
PIP := $(PYTHON) -m pip --disable-pip-version-check

# One stamp directory per interpreter environment, so switching PYTHON reinstalls.
PY_ENV_ID := $(shell $(PYTHON) -c 'import hashlib, sys; print(hashlib.sha256(sys.prefix.encode()).hexdigest()[:12])')
ifeq ($(PY_ENV_ID),)
$(error cannot run $(PYTHON); set PYTHON to a Python >= 3.11 interpreter)
endif
STAMPS := .make/$(PY_ENV_ID)

DISTRIBUTIONS := pool/pyproject.toml client/pyproject.toml pyproject.toml
NODE_CLIENT := tests/e2e/node_client
EGRESS_NODE := tests/egress/node_packages

# Reinstall the distributions if they are missing or installed from another checkout.
ifneq ($(shell $(PYTHON) -I scripts/editable_installed.py 2>/dev/null && echo ok),ok)
$(STAMPS)/packages: FORCE
endif

# Reinstall the e2e Node.js client's npm dependencies if node_modules was removed.
ifeq ($(wildcard $(NODE_CLIENT)/node_modules/@grpc/grpc-js/package.json),)
$(STAMPS)/node-client: FORCE
endif
ifeq ($(wildcard $(EGRESS_NODE)/node_modules/axios/package.json),)
$(STAMPS)/egress-node: FORCE
endif

.PHONY: demo test lint bench lock system-deps install install-dev clean FORCE

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

# Debian packages (node, npm, libseccomp); checks first, apt-get only when something is missing.
system-deps:
	bash scripts/install-system-deps.sh

install: $(STAMPS)/packages
install-dev: system-deps $(STAMPS)/packages $(STAMPS)/dev-locked $(STAMPS)/node-client $(STAMPS)/egress-node

# The locked third-party packages, then the three distributions, editable, without resolving
# anything (their dependencies and their build backend are all in requirements.lock).
$(STAMPS)/locked: requirements.lock
	$(PIP) install --require-hashes --no-deps -r requirements.lock
	@mkdir -p $(@D) && touch $@

# What `make test` adds: linters, type stubs, pytest and the test libraries.
$(STAMPS)/dev-locked: requirements-dev.lock
	$(PIP) install --require-hashes --no-deps -r requirements-dev.lock
	@mkdir -p $(@D) && touch $@

$(STAMPS)/packages: $(STAMPS)/locked $(DISTRIBUTIONS)
	$(PIP) install --no-deps --no-build-isolation -e ./pool -e ./client -e .
	@mkdir -p $(@D) && touch $@

# Re-resolve the lock from the pyproject.toml ranges and requirements-dev.txt (needs the
# package index). Review the diff, run `make test`, commit requirements.lock.
lock:
	$(PYTHON) scripts/lock.py

# The e2e Node.js client's npm dependencies, exactly as locked (tests/e2e/test_node_client.py).
$(STAMPS)/node-client: $(NODE_CLIENT)/package-lock.json $(NODE_CLIENT)/package.json | system-deps
	npm ci --no-audit --no-fund --prefix $(NODE_CLIENT)
	@mkdir -p $(@D) && touch $@

# The npm clients (axios) a program brings in its request files in tests/egress, as locked.
$(STAMPS)/egress-node: $(EGRESS_NODE)/package-lock.json $(EGRESS_NODE)/package.json | system-deps
	npm ci --no-audit --no-fund --prefix $(EGRESS_NODE)
	@mkdir -p $(@D) && touch $@

FORCE:

clean:
	rm -rf .make build .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.egg-info' -type d -prune -exec rm -rf {} +
