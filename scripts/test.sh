#!/usr/bin/env bash
# Set up (scripts/setup.sh, plus the notebook and ray extras) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the notebooks run in a real Jupyter kernel (tests/test_notebooks.py): the notebook extra;
# the Ray backend's tests (tests/test_sweep_ray.py) need the ray extra, and fail here without it
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test,notebook,ray]"
MLPLAB_REQUIRE_RAY=1 exec .venv/bin/python -m pytest "$@"
