# The two commands: `make run` and `make test`. Everything else is a step of theirs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
WITHENV := scripts/withenv

.PHONY: run test serve db venv migrate seed bench bench-faults bench-import dbdown clean

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

db: venv
	$(PY) scripts/devdb.py up

migrate: db
	$(WITHENV) $(PY) manage.py migrate_all
	$(WITHENV) $(PY) manage.py collectstatic --noinput --verbosity 0

seed: migrate
	$(WITHENV) $(PY) manage.py seed_demo

run: seed
	@$(WITHENV) $(PY) manage.py demo_login
	$(WITHENV) $(VENV)/bin/gunicorn -c config/gunicorn.conf.py

serve:
	$(WITHENV) $(VENV)/bin/gunicorn -c config/gunicorn.conf.py

# The same preparation as `make run` (the suite itself builds its own test databases).
test: seed
	$(WITHENV) $(PY) -m pytest

bench: db
	$(WITHENV) $(PY) bench/run.py

bench-faults: venv
	$(WITHENV) $(PY) bench/faults/run.py

# import_products against psql's \copy, and web latency while it runs (not part of `make test`).
bench-import: db
	$(WITHENV) $(PY) bench/import/run.py

dbdown:
	$(PY) scripts/devdb.py down

clean: dbdown
	rm -rf var $(VENV)
