#!/usr/bin/env bash
# The one test command: set up .venv, then lint, type-check and test.
#
#   bash scripts/check.sh            # everything
#   bash scripts/check.sh -k names   # extra arguments go to pytest
#
# Creates .venv with `python3 -m venv` when it is missing and installs the
# package with its test extra into it; torch always comes through
# constraints.txt (an unpinned torch pulls a multi-GB CUDA build). Then runs
# ruff check, ruff format --check, mypy and pytest, in that order. Every stage
# after the install runs even when an earlier one failed, so one run shows
# every problem; the script exits non-zero when any stage failed. pytest's
# "no tests collected" (exit 5) counts as a failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export HF_HUB_OFFLINE=1
export KERAS_BACKEND=torch
export PIP_DISABLE_PIP_VERSION_CHECK=1

PY=.venv/bin/python

stage() {
    printf '\n==> %s\n' "$*"
}

if [[ ! -x "$PY" ]]; then
    stage "creating .venv (python3 -m venv)"
    if ! python3 -m venv .venv; then
        echo "check.sh: 'python3 -m venv .venv' failed; install Python's venv module (e.g. python3-venv)" >&2
        exit 1
    fi
fi

stage "installing craft-callbacks[test] into .venv (pip -c constraints.txt)"
"$PY" -m pip install -q -c constraints.txt -e '.[test]'

# Lint only the folders that exist (an empty folder is not in a fresh clone).
lint_paths=()
for path in src tests benchmarks examples; do
    [[ -e "$path" ]] && lint_paths+=("$path")
done

failed=()

stage "ruff check ${lint_paths[*]}"
"$PY" -m ruff check "${lint_paths[@]}" || failed+=("ruff check")

stage "ruff format --check ${lint_paths[*]}"
"$PY" -m ruff format --check "${lint_paths[@]}" || failed+=("ruff format")

stage "mypy"
"$PY" -m mypy || failed+=("mypy")

stage "pytest${*:+ $*}"
pytest_rc=0
"$PY" -m pytest "$@" || pytest_rc=$?
if [[ $pytest_rc -eq 5 ]]; then
    echo "check.sh: pytest collected no tests (exit 5); that is a failure here" >&2
fi
[[ $pytest_rc -eq 0 ]] || failed+=("pytest (exit $pytest_rc)")

if ((${#failed[@]})); then
    printf '\ncheck.sh: FAILED:\n' >&2
    printf '  - %s\n' "${failed[@]}" >&2
    exit 1
fi
printf '\ncheck.sh: all checks passed\n'
