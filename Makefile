# The two commands of the README. Each one sets up .venv first (created once, reused after).
PROFILE ?= cpu
PY := .venv/bin/python

.PHONY: book test setup clean gpu-check

setup:
	@./scripts/setup-env.sh

# Build the whole site, executing every chapter in the chosen profile (cpu: the real SmolLM2, offline).
# BOOK_ARGS goes to scripts/build_book.py, e.g. BOOK_ARGS="--cell-timeout 720" on a slow machine.
BOOK_ARGS ?=
book: setup
	@LORA_COURSE_PROFILE=$(PROFILE) $(PY) scripts/build_book.py $(BOOK_ARGS)

# The test suite: fast tests and the slow ones that need the real SmolLM2 weights.
test: setup
	@./scripts/setup-system.sh
	@$(PY) -m pytest $(PYTEST_ARGS)

# Every check that needs a CUDA device, in one run (prints "no CUDA device" and exits 0 elsewhere).
gpu-check: setup
	@$(PY) scripts/gpu_check.py

clean:
	rm -rf _build
