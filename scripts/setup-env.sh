#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install what the README's commands need.
# CPU machines get torch's CPU build first, so that no later requirement can pull the CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-book,grader,dev}
TORCH_CPU_VERSION=${TORCH_CPU_VERSION:-2.13.0}
stamp="$VENV/.lora-course-installed"

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
py="$VENV/bin/python"

# Reinstall only when the package metadata changed since the last install: pyproject.toml, or the version,
# which pyproject.toml reads from lora_course/__init__.py (an editable install records it when installed).
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt lora_course/__init__.py ] \
    && [ "$(cat "$stamp")" = "$EXTRAS" ]; then
    exit 0
fi

"$py" -m pip install --quiet --upgrade pip
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
if "$py" -c "import torch" 2>/dev/null; then
    echo "setup: keeping installed torch $("$py" -c 'import torch; print(torch.__version__)')"
    echo "torch==$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')" > "$constraints"
elif command -v nvidia-smi >/dev/null 2>&1; then
    echo "setup: CUDA machine, installing torch from the index"
    "$py" -m pip install --quiet torch
    : > "$constraints"
else
    echo "setup: CPU machine, installing torch==$TORCH_CPU_VERSION (CPU build)"
    "$py" -m pip install --quiet "torch==$TORCH_CPU_VERSION"
    echo "torch==$TORCH_CPU_VERSION" > "$constraints"
fi
# The constraint keeps every other requirement from upgrading torch (and pulling CUDA wheels).
"$py" -m pip install --quiet -c "$constraints" -e ".[$EXTRAS]"
echo "$EXTRAS" > "$stamp"
echo "setup: done ($("$py" -c 'import torch, transformers, peft; print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")'))"
