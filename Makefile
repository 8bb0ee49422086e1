# The two commands: `make run` and `make test`. Everything else is a step of theirs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format serve db portcheck migrate seed sysdeps-test sysdeps-bench \
	bench bench-faults bench-import bench-admin dbdown clean

# One stamp per requirements file: a production-like `make run` installs only the runtime.
$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@
$(VENV)/.test: $(VENV)/.runtime requirements-test.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@
$(VENV)/.bench: $(VENV)/.test requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

sysdeps-test: $(VENV)/.runtime
	$(PY) scripts/sysdeps.py test
sysdeps-bench: $(VENV)/.runtime
	$(PY) scripts/sysdeps.py bench

portcheck: $(VENV)/.runtime
	$(PY) scripts/devdb.py portcheck

db: $(VENV)/.runtime
	$(PY) scripts/devdb.py up

migrate: db
	$(PY) manage.py migrate_all
	$(PY) manage.py collectstatic --noinput --verbosity 0

seed: migrate
	$(PY) manage.py seed_demo

run: portcheck seed
	@$(PY) manage.py demo_login
	exec $(VENV)/bin/gunicorn -c config/gunicorn.conf.py

serve: $(VENV)/.runtime
	$(VENV)/bin/gunicorn -c config/gunicorn.conf.py

lint: $(VENV)/.test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: $(VENV)/.test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Lint first (seconds), then system programs, then the same preparation as `make run`;
# the suite builds its own test databases and clusters.
test: lint sysdeps-test seed
	$(PY) -m pytest

# BASELINE=<git rev or path of another checkout>: that code measured in the same rounds (bench/run.py).
bench: $(VENV)/.bench sysdeps-bench db
	$(if $(BASELINE),BENCH_BASELINE='$(BASELINE)' )$(PY) bench/run.py

bench-faults: $(VENV)/.bench sysdeps-bench
	$(PY) bench/faults/run.py

# import_products against psql's \copy, and web latency while it runs (not part of `make test`).
bench-import: $(VENV)/.bench sysdeps-bench db
	$(PY) bench/import/run.py

# Every admin page at 10k rows and at full size (issue 17's targets); docs/admin-scale.md (not part of `make test`).
bench-admin: $(VENV)/.bench db
	$(PY) bench/admin/run.py

dbdown: $(VENV)/.runtime
	$(PY) scripts/devdb.py down

clean: dbdown
	rm -rf var $(VENV)
