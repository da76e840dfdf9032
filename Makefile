PY ?= .venv/bin/python

.PHONY: test lint typecheck schema check bots

test:
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check engine tests bench app.py
	$(PY) -m ruff format --check engine tests bench app.py

typecheck:
	$(PY) -m mypy

schema:
	$(PY) -m engine schema --check

bots:
	$(PY) -m engine validate bots/
	$(PY) -m engine test bots/

check: lint typecheck schema bots test
