#!/usr/bin/env bash
# The one test command: set up .venv, then lint, type-check and test.
#
#   bash scripts/check.sh            # everything (the README's command, and CI's)
#   bash scripts/check.sh --fast     # skips the tests marked slow, while you iterate
#   bash scripts/check.sh -k names   # other arguments go to pytest
#
# Creates .venv with `python3 -m venv` when it is missing and installs the
# package with its test extra into it; torch always comes through
# constraints.txt (an unpinned torch pulls a multi-GB CUDA build). Then runs
# ruff check, ruff format --check, mypy and pytest, in that order. Every stage
# after the install runs even when an earlier one failed, so one run shows
# every problem; the script exits non-zero when any stage failed. pytest's
# "no tests collected" (exit 5) counts as a failure.
#
# The dashboard's browser tests (tests/test_ui_browser.py) and its benchmark
# drive Debian's headless Chromium through Playwright (Playwright's own browser
# download cannot reach its servers from CI): when `chromium` is not on the
# PATH, it is installed with `apt-get install -y chromium` (CI runs as root on
# Debian; elsewhere through `sudo -n` when that needs no password). If that
# fails, the script stops there and says what to run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

pytest_args=()
for argument in "$@"; do
    if [[ "$argument" == "--fast" ]]; then
        pytest_args+=(-m "not slow")
    else
        pytest_args+=("$argument")
    fi
done

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

if ! command -v chromium >/dev/null 2>&1; then
    stage "installing Debian's chromium for the browser tests (apt-get install -y chromium)"
    sudo_cmd=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo_cmd=(sudo -n)
        else
            echo "check.sh: chromium is not on the PATH and this user cannot install it (not root, no" \
                "password-less sudo); run: sudo apt-get update && sudo apt-get install -y chromium" >&2
            exit 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "check.sh: chromium is not on the PATH and there is no apt-get to install it; install" \
            "Chromium so that \`chromium\` is on the PATH (the browser tests drive it)" >&2
        exit 1
    fi
    if ! { "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; then
        echo "check.sh: 'apt-get update && apt-get install -y chromium' failed (see above); the browser" \
            "tests need it" >&2
        exit 1
    fi
    if ! command -v chromium >/dev/null 2>&1; then
        echo "check.sh: apt-get installed chromium but \`chromium\` is still not on the PATH" >&2
        exit 1
    fi
fi
echo "chromium: $(chromium --version 2>/dev/null || echo 'version unknown') ($(command -v chromium))"

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

stage "pytest${pytest_args[*]:+ ${pytest_args[*]}}"
pytest_rc=0
"$PY" -m pytest ${pytest_args[@]+"${pytest_args[@]}"} || pytest_rc=$?
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
