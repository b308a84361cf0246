#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, obtain Fashion-MNIST, train the chapter's MLP.
# Extra arguments go to `mlplab train` (e.g. --epochs 20 --hidden 256,256).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mlplab=.venv/bin/mlplab
if ! "$mlplab" data info >/dev/null 2>&1 && [ ! -d /usr/share/datasets/fashion-mnist ] \
    && command -v apt-get >/dev/null; then
    # Debian/Ubuntu ship the data set as a package; use it when we may install packages.
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
    echo "mlplab: installing Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)"
    $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
        || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
        || echo "mlplab: apt-get could not install it; downloading from upstream instead"
fi
"$mlplab" data fetch
exec "$mlplab" train "$@"
