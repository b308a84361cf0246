#!/usr/bin/env bash
# Execute one notebook of docs/notebooks (default: 01-mlp), render it to HTML with nbconvert and take
# the screenshot docs/notebooks/screenshot.png in headless Chromium (python -m mlplab.report.browser).
#   bash scripts/notebook-screenshot.sh [NOTEBOOK [PNG]]
# Needs the notebook extra (pip install -e ".[notebook]") and Chromium (scripts/install-browser.sh).
# The notebook runs in a temporary folder (its runs/ go there), in a kernel of this .venv's Python.
set -euo pipefail
cd "$(dirname "$0")/.."
NOTEBOOK=${1:-docs/notebooks/01-mlp.ipynb}
SHOT=${2:-docs/notebooks/screenshot.png}
export MLPLAB_DATA="${MLPLAB_DATA:-$(cd .. && pwd)/shared/data}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# a kernelspec of this environment's Python, found before any other "python3" (JUPYTER_PATH comes first)
mkdir -p "$WORK/jupyter/kernels/python3"
printf '{"argv": ["%s", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "mlplab", "language": "python"}\n' \
    "$(pwd)/.venv/bin/python" > "$WORK/jupyter/kernels/python3/kernel.json"
NAME=$(basename "$NOTEBOOK" .ipynb)
cp "$NOTEBOOK" "$WORK/$NAME.ipynb"
JUPYTER_PATH="$WORK/jupyter" .venv/bin/jupyter nbconvert --to html --execute \
    --ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.timeout=600 "$WORK/$NAME.ipynb"
# the page's own check may list the template's CDN scripts (MathJax, require.js), which never load here:
# only the screenshot is wanted, so its exit status is not the script's
.venv/bin/python -m mlplab.report.browser "$WORK/$NAME.html" --screenshot "$SHOT" --width 1000 --height 1400 || true
test -s "$SHOT"
echo "screenshot: $SHOT"
