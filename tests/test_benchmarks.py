"""The benchmark scripts still run and check what they deliver (small sizes: a smoke test, no timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_bench_memory_runs_and_every_list_is_delivered_alike(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    done = run_script("bench_memory.py", "--sink", "local", "--steps", "50000", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())["results"][0]
    delivered = set(result["delivered"].values())
    assert len(result["delivered"]) == 8 and len(delivered) == 1
    assert 25_000 < delivered.pop() <= 50_000  # thinned (length unknown) under the cap, past its half
    assert result["growth_bytes"] > 0 and result["steps"] == 50_000


def test_bench_traffic_runs_and_counts_requests(tmp_path: Path) -> None:
    out = tmp_path / "traffic.json"
    done = run_script("bench_traffic.py", "--steps", "200", "--naive-steps", "10", "--json", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["ours"]["steps"] == 200 and report["ours"]["failed"] == 0
    assert report["requests_ratio"] > 1


def test_bench_digitalhub_runs_and_checks_every_value() -> None:
    done = run_script("bench_digitalhub.py", "--steps", "20")
    assert done.returncode == 0, done.stderr
    assert "fewer requests" in done.stdout
