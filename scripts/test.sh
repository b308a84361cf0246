#!/usr/bin/env bash
# Set up (scripts/setup.sh, plus the notebook extra) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the notebooks run in a real Jupyter kernel (tests/test_notebooks.py): the notebook extra
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test,notebook]"
exec .venv/bin/python -m pytest "$@"
