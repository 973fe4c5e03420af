#!/usr/bin/env bash
# The demo command: set up .venv, train tiny models with the three adapters, show the runs.
#
#   bash scripts/demo.sh
#
# Creates .venv with `python3 -m venv` when it is missing, installs the package
# with every extra into it (torch through constraints.txt: an unpinned torch
# pulls a multi-GB CUDA build), then runs examples/quickstart.py: a HuggingFace
# Trainer, a Lightning and a Keras model trained on the CPU, recorded into
# ./craft_metrics/metrics.db, the runs listed, a PNG plot and ./report.html (the
# three runs compared, one file that opens from disk) written, and, last, the
# `craft-callbacks ui` line to run for the live dashboard.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export HF_HUB_OFFLINE=1
export KERAS_BACKEND="${KERAS_BACKEND:-torch}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [[ ! -x .venv/bin/python ]]; then
    echo "==> creating .venv (python3 -m venv)"
    python3 -m venv .venv
fi
echo "==> installing craft-callbacks[all] into .venv (pip -c constraints.txt)"
.venv/bin/python -m pip install -q -c constraints.txt -e '.[all]'
echo "==> running examples/quickstart.py"
exec .venv/bin/python examples/quickstart.py
