#!/usr/bin/env bash
# Create .venv (if missing) and install mlplab with its test extras into it.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "mlplab setup: creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test]"
echo "mlplab setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
