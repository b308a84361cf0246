#!/usr/bin/env bash
# Install the headless Chromium that `python -m mlplab.report.browser` checks report.html with,
# and a Chinese font (the report quotes the study log in Chinese; without one its screenshot shows boxes).
# Idempotent: when both are there it only prints Chromium's version.
set -euo pipefail

has_cjk_font() { command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh 2>/dev/null)" ]; }

if command -v chromium >/dev/null 2>&1 && has_cjk_font; then
    echo "mlplab install-browser: $(chromium --version 2>/dev/null || echo "chromium at $(command -v chromium)")"
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    # Refresh the package lists only when they are missing (a fresh container has none).
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        echo "mlplab install-browser: apt-get update"
        apt-get update -qq
    fi
    echo "mlplab install-browser: apt-get install chromium fonts-wqy-microhei"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei; then
        # Stale lists (a package version that the mirror no longer has): refresh them and retry once.
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei
    fi
    echo "mlplab install-browser: $(chromium --version)"
    exit 0
fi

{
    echo "mlplab install-browser: chromium is not on PATH and cannot be installed here (that needs root and apt-get)."
    echo "Fix: install it as an administrator, e.g. on Debian/Ubuntu \`sudo apt-get install chromium\`"
    echo "(\`chromium-browser\` on older Ubuntu), or point MLPLAB_CHROMIUM at an existing Chromium or Chrome binary."
} >&2
exit 1
