# The two commands of the README. Each one sets up .venv first (created once, reused after).
PROFILE ?= cpu
PY := .venv/bin/python

.PHONY: book test setup clean

setup:
	@./scripts/setup-env.sh

# Build the whole site, executing every chapter in the chosen profile (cpu: the real SmolLM2, offline).
book: setup
	@LORA_COURSE_PROFILE=$(PROFILE) $(PY) scripts/build_book.py

# The test suite: fast tests and the slow ones that need the real SmolLM2 weights.
test: setup
	@./scripts/setup-system.sh
	@$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf _build
