# The two commands: `make run` (set up and serve on the embedded SQLite default) and `make test`.
.PHONY: run test lint bench-sync setup clean

VENV_PY := .venv/bin/python

run:
	@scripts/bootstrap.sh requirements.txt
	@scripts/run.sh

test:
	@scripts/bootstrap.sh requirements-dev.txt
	@scripts/ensure-chromium.sh
	@scripts/ensure-axe.sh
	$(VENV_PY) -m ruff check .
	$(VENV_PY) -m mypy .
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

lint:
	@scripts/bootstrap.sh requirements-dev.txt
	$(VENV_PY) -m ruff check .
	$(VENV_PY) -m ruff format --check .
	$(VENV_PY) -m mypy .

setup:
	@scripts/bootstrap.sh requirements-dev.txt

clean:
	rm -rf .venv var/test-media .pytest_cache
