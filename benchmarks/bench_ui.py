"""Dashboard benchmark: `craft-callbacks ui` on 50 runs x 4 lists x 50,000 values, beside plot, TensorBoard.

The data: a local store of ``--runs`` (50) runs, each with 4 list
metrics (``loss``, ``val_loss``, ``accuracy``, ``learning_rate``) of
``--values`` (50,000, the platform's cap per list) values at steps 1..N, noisy
training curves that differ per run, hyperparameters and end-of-run scalars. It
is written straight through ``LocalStore.start_execution`` + ``LocalStore.write``
in chunks of ``--chunk`` (1,000) steps x 4 lists, one transaction each, as the
recorder's worker writes them (it flushes every 2 s or 4,096 values), so the
dashboard reads the chunks a real store holds; no thinning (50,000 is the cap).

Measured in one run, against one ``craft-callbacks ui --store S --port 0``
process (its URL read from its first line of output):

* ``GET /api/runs``: the time to the last byte of the answer, the first request
  (cold) and the median over ``--repeats``;
* ``GET /api/series?runs=<10 runs>&metric=loss&points=1000``: the same, and the
  points each run's series holds (the goal: at most 2 x 1,000), with its first
  and last step checked against the store;
* in headless Chromium (Debian's ``chromium``, driven by Playwright through
  ``executable_path``), ``/compare?runs=<the 10 runs>``: the time from the
  navigation until the page says its charts are drawn (``app.js`` sets
  ``body[data-state=ready]`` once every chart has loaded its series and drawn;
  ``window.__chartsReady`` or a ``data-ready`` attribute would do too; a page
  that says nothing: every ``.chart canvas`` non-blank), each repeat in a fresh
  browser context (no cache), the browser already started, a 1400 x 2400
  viewport; the page's own clock (``performance.now()``) and each request's
  time are kept in the JSON;
* the ``ui`` process's memory: its resident set (``VmRSS``) and its high-water
  mark (``VmHWM``, the peak over the whole run, browser loads included);
* ``craft-callbacks plot <the 10 runs> --metric loss -o x.png`` in a
  subprocess, wall time (what a user waits for, Python's start included),
  ``--plot-repeats`` times;
* TensorBoard, where it is installed (the ``bench`` extra): the same values of
  the same 10 runs (all 4 lists, as TensorBoard event files, written here with
  a vectorised encoder of TensorBoard's record format) served by ``tensorboard
  --logdir``; the time from its start until it serves every value of the 10
  runs, then its scalars dashboard's HTTP answer for those runs and the metric
  (``/data/plugin/scalars/scalars?run=R&tag=loss``, one request per run, as its
  scalars route takes one run), and, in the same Chromium, its time-series page
  filtered to the 4 tags (``?tagFilter=...#timeseries``: unfiltered, it opens
  only the first two groups) until each of the 4 cards lists every run at the
  last step (its lines are WebGL, whose pixels a page cannot read back; the
  card's table fills from the same data). Reported as not measured when its
  page does not get there (another TensorBoard version may differ).

Goals: the compare page ready in under a quarter of ``plot``'s time
(medians); at most 2 x 1,000 points per run in a series answer; the ``ui``
process's memory under 200 MB (its peak).

Run: ``.venv/bin/python benchmarks/bench_ui.py [--runs N] [--values N] [--compare N] [--points N]
[--repeats N] [--plot-repeats N] [--store PATH] [--no-browser] [--no-tensorboard] [--small]
[--screenshots DIR] [--json PATH]``; ``--small`` is the smoke size (12 runs x 3,000 values, one
repeat). ``--store PATH`` keeps the generated store there and reuses it when it already holds the data.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import harness
from harness import Goal, table

METRICS = ("loss", "val_loss", "accuracy", "learning_rate")
MEASURED_METRIC = "loss"
PIPELINES = ("resnet-sweep", "bert-finetune", "llama-sft", "vit-pretrain", "tabular-gbdt")
PAGE_RATIO_GOAL = 0.25  # the compare page ready in under a quarter of plot's time
POINTS_FACTOR = 2  # at most 2 x points per run in a series answer
RSS_GOAL_MB = 200.0
MB = harness.MB
WORKLOAD = "(f) dashboard"  # its rows' first column in the report's goals table
# Tall enough for 4 charts: TensorBoard creates a chart card only once it is scrolled into view.
VIEWPORT = {"width": 1400, "height": 2400}
CHILD_ENV = {"CRAFT_CALLBACKS_VERBOSITY": "warning", "PYTHONUNBUFFERED": "1"}

# Ready when the page says so (app.js: body[data-state=ready] once every chart has loaded and drawn; or
# window.__chartsReady, or a data-ready attribute); where it says nothing (no flag, and its charts carry no
# data-state), once the page has loaded and every chart's canvas is drawn on.
READY_JS = """() => {
  const t = performance.now();
  if (window.__chartsReady === true) return {signal: "window.__chartsReady", t};
  const state = document.body ? document.body.dataset.state : undefined;
  if (state !== undefined) return state === "ready" ? {signal: "body[data-state=ready]", t} : false;
  const flagged = document.querySelector("[data-ready]");
  if (flagged) {
    const value = flagged.getAttribute("data-ready");
    return value !== "false" && value !== "0" ? {signal: "data-ready", t} : false;
  }
  if (window.__chartsReady !== undefined) return false;
  if (document.readyState !== "complete" || document.querySelector(".chart[data-state]")) return false;
  const canvases = Array.from(document.querySelectorAll(".chart canvas"));
  if (!canvases.length) return false;
  for (const canvas of canvases) {
    if (!canvas.width || !canvas.height) return false;
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let drawn = false;
    for (let i = 3; i < pixels.length; i += 64) if (pixels[i]) { drawn = true; break; }
    if (!drawn) return false;
  }
  return {signal: "every .chart canvas non-blank", t};
}"""
# When the last file or answer the page fetched had arrived, on the page's clock (performance.now()).
DATA_IN_JS = """() => {
  const ends = performance.getEntriesByType("resource").map((entry) => entry.responseEnd);
  return ends.length ? Math.max(...ends) : null;
}"""
CHARTS_JS = """() => {
  const charts = document.querySelectorAll(".chart").length;
  const drawn = document.querySelectorAll(".chart[data-state=drawn]").length;
  return charts ? `${drawn} of ${charts} drawn` : `${document.querySelectorAll("canvas").length} canvases`;
}"""


# -- the data ----------------------------------------------------------------------------


def curves(run: int, values: int) -> dict[str, Any]:
    """The 4 lists of run ``run``: numpy arrays of ``values`` floats, noisy and different per run."""
    import numpy as np

    rng = np.random.default_rng(1000 + run)
    x = np.arange(1, values + 1, dtype=np.float64) / values
    rate = 3.0 + (run % 7)
    floor = 0.05 + 0.02 * (run % 5)
    loss = floor + 2.3 * np.exp(-rate * x) + rng.normal(0.0, 0.08, values) * np.exp(-x)
    loss = np.maximum(loss, floor / 4)
    val_loss = floor * 1.3 + 2.3 * np.exp(-rate * 0.8 * x) + rng.normal(0.0, 0.03, values) + 0.1 * x**2
    accuracy = np.clip(1.0 - 0.9 * np.exp(-rate * x) - floor + rng.normal(0.0, 0.02, values), 0.0, 1.0)
    peak = 10.0 ** -(3 + run % 3)
    warmup = np.minimum(1.0, x / 0.02)
    learning_rate = peak * warmup * 0.5 * (1.0 + np.cos(np.pi * x))
    return {"loss": loss, "val_loss": val_loss, "accuracy": accuracy, "learning_rate": learning_rate}


def run_id(run: int) -> str:
    """A run id of the store's form (``YYYYMMDD-HHMMSS-xxxxxx``), one a minute from 09:00."""
    return f"20260301-{9 + run // 60:02d}{run % 60:02d}00-{(run * 2654435761) % 16**6:06x}"


def hyperparameters(run: int) -> dict[str, Any]:
    return {
        "learning_rate": 10.0 ** -(3 + run % 3),
        "batch_size": (16, 32, 64, 128)[run % 4],
        "seed": run,
        "optimizer": ("adamw", "sgd")[run % 2],
        "warmup_ratio": 0.02,
        "weight_decay": (0.0, 0.01)[run % 2],
        "model": PIPELINES[run % len(PIPELINES)],
    }


def store_matches(path: Path, runs: int, values: int) -> list[str] | None:
    """The run ids of the store at ``path`` when it already holds this benchmark's data, else None."""
    from craft_callbacks import LocalStore

    if not path.exists():
        return None
    store = LocalStore(path)
    try:
        found = [run["execution_id"] for run in store.executions()]
        if len(found) != runs:
            return None
        for run in (found[0], found[-1]):
            if store.list_counts(run) != dict.fromkeys(METRICS, values):
                return None
        return found
    finally:
        store.close()


def build_store(path: Path, runs: int, values: int, chunk: int) -> list[str]:
    """Write the benchmark's runs into a new store at ``path``; their ids, in order."""
    from craft_callbacks import LocalStore

    store = LocalStore(path)
    ids = []
    try:
        for run in range(runs):
            data = curves(run, values)
            execution_id = store.start_execution(
                pipeline_name=PIPELINES[run % len(PIPELINES)],
                hyperparameters=hyperparameters(run),
                execution_id=run_id(run),
            )
            steps = list(range(1, values + 1))
            lists = {name: data[name].tolist() for name in METRICS}
            for start in range(0, values, chunk):
                end = min(start + chunk, values)
                store.write(
                    execution_id, lists=[(name, steps[start:end], lists[name][start:end]) for name in METRICS]
                )
            scalars = {f"final_{name}": lists[name][-1] for name in METRICS}
            scalars["best_val_loss"] = min(lists["val_loss"])
            store.write(execution_id, scalars=scalars)
            store.set_status(execution_id, "success")
            ids.append(execution_id)
    finally:
        store.close()
    return ids


# -- TensorBoard's event files, written fast -----------------------------------------------


def _crc32c_table() -> Any:
    import numpy as np

    table = np.zeros(256, dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table[byte] = crc
    return table


def masked_crc32c(rows: Any) -> Any:
    """The masked CRC-32C of each row of ``rows`` (a 2-D uint8 array), as TFRecord frames a record."""
    import numpy as np

    table = _crc32c_table()
    crc = np.full(rows.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for column in range(rows.shape[1]):
        crc = table[(crc ^ rows[:, column]) & 0xFF] ^ (crc >> np.uint32(8))
    crc ^= np.uint32(0xFFFFFFFF)
    return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8)


def _frame(data: Any) -> Any:
    """TFRecord records (length, its masked CRC, data, its masked CRC) of each row of ``data``."""
    import numpy as np

    count, length = data.shape
    head = np.frombuffer(np.uint64(length).tobytes(), dtype=np.uint8)
    head_crc = masked_crc32c(head[None, :]).astype("<u4").view(np.uint8)
    records = np.empty((count, 16 + length), dtype=np.uint8)
    records[:, :8] = head
    records[:, 8:12] = head_crc
    records[:, 12 : 12 + length] = data
    records[:, 12 + length :] = masked_crc32c(data).astype("<u4").view(np.uint8).reshape(count, 4)
    return records


def _scalar_events(tag: str, steps: Any, values: Any, walls: Any, width: int) -> Any:
    """One serialized ``Event`` (wall_time, step, a ``simple_value`` summary) per row, for steps whose
    varint is ``width`` bytes: what ``SummaryWriter.add_scalar`` writes, field for field."""
    import numpy as np

    name = tag.encode()
    if len(name) > 100:
        raise ValueError(f"tag too long: {tag}")
    count = len(steps)
    length = 21 + width + len(name)
    data = np.empty((count, length), dtype=np.uint8)
    data[:, 0] = 0x09  # wall_time, double
    data[:, 1:9] = walls.astype("<f8").view(np.uint8).reshape(count, 8)
    data[:, 9] = 0x10  # step, varint
    for index in range(width):
        byte = (steps >> (7 * index)) & 0x7F
        data[:, 10 + index] = byte | (0x80 if index < width - 1 else 0)
    at = 10 + width
    value_length = len(name) + 7
    data[:, at : at + 6] = [0x2A, value_length + 2, 0x0A, value_length, 0x0A, len(name)]
    at += 6
    data[:, at : at + len(name)] = np.frombuffer(name, dtype=np.uint8)
    at += len(name)
    data[:, at] = 0x15  # simple_value, float
    data[:, at + 1 :] = values.astype("<f4").view(np.uint8).reshape(count, 4)
    return _frame(data)


def write_event_file(folder: Path, series: dict[str, Any], steps: Any, start: float) -> Path:
    """One TensorBoard event file in ``folder`` holding each list of ``series`` at ``steps`` (ints), the
    tags interleaved step by step as a training loop writes them, one step per 0.1 s from ``start``."""
    import numpy as np
    from tensorboard.compat.proto import event_pb2

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"events.out.tfevents.{int(start)}.{socket.gethostname()}.bench"
    steps = np.asarray(steps, dtype=np.int64)
    walls = start + steps * 0.1
    header = event_pb2.Event(wall_time=start, file_version="brain.Event:2").SerializeToString()
    blocks = [_frame(np.frombuffer(header, dtype=np.uint8)[None, :]).tobytes()]
    bounds = [0, 1 << 7, 1 << 14, 1 << 21, 1 << 28, 1 << 35]
    for width in range(1, len(bounds)):
        mask = (steps >= bounds[width - 1]) & (steps < bounds[width])
        if width == 1:
            mask |= steps < 0
        if not mask.any():
            continue
        if (steps[mask] < 0).any():
            raise ValueError("negative steps")
        per_tag = [
            _scalar_events(tag, steps[mask], np.asarray(values)[mask], walls[mask], width)
            for tag, values in series.items()
        ]
        blocks.append(np.hstack(per_tag).tobytes())  # row by row: every tag of one step, then the next
    path.write_bytes(b"".join(blocks))
    return path


def write_tensorboard_logdir(logdir: Path, ids: Sequence[str], values: int, first_run: int) -> None:
    """The lists of runs ``ids`` (run index ``first_run`` on) as one event file each under ``logdir``."""
    import numpy as np

    steps = np.arange(1, values + 1, dtype=np.int64)
    for offset, execution_id in enumerate(ids):
        data = curves(first_run + offset, values)
        write_event_file(logdir / execution_id, {name: data[name] for name in METRICS}, steps, 1.7e9)


# -- processes and HTTP ----------------------------------------------------------------------


def status_kb(pid: int, field: str) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def children(pid: int) -> list[int]:
    """The process ids under ``pid`` (recursively), read from /proc."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                for child in (task / "children").read_text().split():
                    found += [int(child), *children(int(child))]
    return found


def memory(pid: int, with_children: bool = False) -> dict[str, int | None]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in bytes (summed over its children when ``with_children``)."""
    pids = [pid, *(children(pid) if with_children else [])]
    result: dict[str, int | None] = {}
    for field in ("VmRSS", "VmHWM"):
        kbs = [status_kb(one, field) for one in pids]
        known = [kb for kb in kbs if kb is not None]
        result[field] = sum(known) * 1024 if known else None
    result["processes"] = len(pids)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def drain(stream: Any, into: list[str]) -> None:
    """Read ``stream`` to its end into ``into`` (a thread, so that a child never blocks writing)."""

    def read() -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()


def get(url: str, timeout: float = 120.0) -> tuple[float, bytes]:
    """Seconds until the last byte of the answer to GET ``url`` (a new connection), and the answer."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        body = answer.read()
    return time.perf_counter() - started, body


@contextlib.contextmanager
def ui_server(store: Path) -> Iterator[tuple[subprocess.Popen[str], str, float, list[str]]]:
    """``craft-callbacks ui --store STORE --port 0`` in a process: (it, its URL, seconds until its URL
    line, its other output)."""
    command = [sys.executable, "-m", "craft_callbacks.cli", "ui", "--store", str(store), "--port", "0"]
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **CHILD_ENV},
    )
    output: list[str] = []
    try:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline().strip()
        startup = time.perf_counter() - started
        drain(process.stdout, output)
        drain(process.stderr, output)
        if not first.startswith("http://"):
            time.sleep(0.5)
            raise RuntimeError(f"`craft-callbacks ui` printed {first!r} first, not its URL: {output[-5:]}")
        yield process, first if first.endswith("/") else first + "/", startup, output
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def timed_requests(url: str, repeats: int) -> tuple[list[float], bytes]:
    """GET ``url`` ``repeats`` + 1 times: the seconds of each (the first is the cold one), the last body."""
    seconds = []
    body = b""
    for _ in range(repeats + 1):
        took, body = get(url)
        seconds.append(took)
    return seconds, body


def timing(seconds: Sequence[float]) -> dict[str, Any]:
    """The first (cold) request and the median of the others (all of them with a single one)."""
    warm = list(seconds[1:]) or list(seconds)
    return {"first_s": seconds[0], "median_s": statistics.median(warm), "all_s": list(seconds)}


# -- our server -------------------------------------------------------------------------------


def check_series(answer: dict[str, Any], ids: Sequence[str], values: int, points: int) -> dict[str, Any]:
    """What a series answer holds per run, against the store (steps 1..values)."""
    rows = []
    for series in answer.get("series", []):
        steps = series.get("steps") or []
        rows.append(
            {
                "run": series.get("run"),
                "points": len(steps),
                "values_match": len(series.get("values") or []) == len(steps),
                "first_step": steps[0] if steps else None,
                "last_step": steps[-1] if steps else None,
                "total": series.get("total"),
                "reported_last_step": series.get("last_step"),
                "downsampled": series.get("downsampled"),
            }
        )
    most = max((row["points"] for row in rows), default=0)
    return {
        "runs_answered": len(rows),
        "runs_asked": len(ids),
        "max_points": most,
        "min_points": min((row["points"] for row in rows), default=0),
        "ends_kept": bool(rows) and all((row["first_step"], row["last_step"]) == (1, values) for row in rows),
        "totals_right": bool(rows) and all(row["total"] == values for row in rows),
        "per_run": rows,
        "pass": len(rows) == len(ids)
        and all(row["values_match"] for row in rows)
        and 0 < most <= POINTS_FACTOR * points,
    }


def measure_api(url: str, ids: Sequence[str], compared: Sequence[str], args: Any) -> dict[str, Any]:
    runs_seconds, body = timed_requests(url + "api/runs", args.repeats)
    listed = json.loads(body)
    runs_list = listed if isinstance(listed, list) else listed.get("runs", [])
    query = f"api/series?runs={','.join(compared)}&metric={MEASURED_METRIC}&points={args.points}"
    series_seconds, series_body = timed_requests(url + query, args.repeats)
    series = check_series(json.loads(series_body), compared, args.values, args.points)
    one_seconds, _ = timed_requests(url + f"api/runs/{compared[0]}", args.repeats)
    return {
        "runs": {**timing(runs_seconds), "bytes": len(body), "runs_listed": len(runs_list)},
        "series": {**timing(series_seconds), "bytes": len(series_body), "query": query, **series},
        "one_run": timing(one_seconds),
    }


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium (Debian's package on the PATH) through Playwright."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise RuntimeError("no chromium on the PATH (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"], headless=True)
        try:
            yield browser
        finally:
            browser.close()


def page_loads(
    browser: Any,
    url: str,
    repeats: int,
    ready: Callable[[Any], Any],
    screenshot: Path | None,
    timeout_s: float,
) -> dict[str, Any]:
    """``repeats`` loads of ``url``, each in a fresh context: seconds until ``ready(page)`` returned."""
    loads = []
    for repeat in range(repeats):
        context = browser.new_context(viewport=VIEWPORT)
        requests: list[str] = []
        received = [0]
        failed: list[str] = []
        page = context.new_page()
        page.on("request", lambda request, into=requests: into.append(request.url))
        page.on("requestfailed", lambda request, into=failed: into.append(request.url))

        def counted(response: Any, into: list[int] = received) -> None:
            with contextlib.suppress(Exception):
                into[0] += int(response.headers.get("content-length") or 0)

        page.on("response", counted)
        finished: list[tuple[str, float | None]] = []

        def timed(request: Any, into: list[tuple[str, float | None]] = finished) -> None:
            with contextlib.suppress(Exception):
                took = request.timing.get("responseEnd")
                where = urllib.parse.urlsplit(request.url)
                path = f"{where.path}?{where.query}"[:90].rstrip("?")
                into.append((path, took if took and took > 0 else None))

        page.on("requestfinished", timed)
        errors: list[str] = []
        page.on("pageerror", lambda error, into=errors: into.append(str(error)))
        page.set_default_timeout(timeout_s * 1000)
        try:
            started = time.perf_counter()
            page.goto(url, wait_until="commit")
            signal = ready(page)
            seconds = time.perf_counter() - started
            data_in = page.evaluate(DATA_IN_JS)
            load = {
                "seconds": seconds,
                "page_ms": signal.get("t"),
                "data_in_ms": data_in,
                "signal": signal.get("signal"),
                "charts": signal.get("charts"),
                "requests": len(requests),
                "request_ms": [[path, round(took, 1) if took else None] for path, took in finished],
                "failed_requests": failed[:5],
                "bytes": received[0],
                "page_errors": errors[:3],
            }
            if screenshot is not None and repeat == 0:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
                load["screenshot"] = str(screenshot)
            loads.append(load)
        finally:
            context.close()
    return {**timing([load["seconds"] for load in loads]), "loads": loads}


def compare_ready(page: Any) -> dict[str, Any]:
    handle = page.wait_for_function(READY_JS, polling=25)
    signal = dict(handle.json_value())
    signal["charts"] = page.evaluate(CHARTS_JS)
    return signal


def measure_browser(url: str, compared: Sequence[str], args: Any, browser: Any) -> dict[str, Any]:
    shot = args.screenshots / "bench-compare.png" if args.screenshots else None
    page_url = url + "compare?runs=" + ",".join(compared)
    result = page_loads(browser, page_url, args.repeats, compare_ready, shot, args.page_timeout)
    result["url"] = page_url.replace(url, "/")
    return result


# -- plot ---------------------------------------------------------------------------------------


def measure_plot(store: Path, compared: Sequence[str], repeats: int, folder: Path) -> dict[str, Any]:
    output = folder / "plot.png"
    command = [sys.executable, "-m", "craft_callbacks.cli", "plot", *compared]
    command += ["--metric", MEASURED_METRIC, "-o", str(output), "--store", str(store)]
    seconds = []
    for _ in range(repeats):
        output.unlink(missing_ok=True)
        started = time.perf_counter()
        done = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, **CHILD_ENV}, check=False
        )
        took = time.perf_counter() - started
        if done.returncode != 0 or not output.exists():
            raise RuntimeError(f"plot failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
        seconds.append(took)
    return {
        "median_s": statistics.median(seconds),
        "all_s": seconds,
        "png_bytes": output.stat().st_size,
        "command": "craft-callbacks plot <10 runs> --metric loss -o plot.png",
    }


# -- TensorBoard ----------------------------------------------------------------------------------


def tensorboard_missing() -> str | None:
    return harness.not_installed("tensorboard", "numpy")


def poll(check: Callable[[], bool], timeout_s: float, every_s: float = 0.1) -> bool:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
            if check():
                return True
        time.sleep(every_s)
    return False


def tensorboard_ready(page: Any, cards: int, runs: Sequence[str], last_step: int, timeout_s: float) -> Any:
    """TensorBoard's time-series page: ``cards`` scalar cards, each with its data in: its table beside the
    chart lists every run at the last step (TensorBoard draws the lines with WebGL, whose pixels a page
    cannot read back; the table fills from the same data in the same update)."""
    script = """([cards, runs, last]) => {
      const t = performance.now();
      const found = Array.from(document.querySelectorAll("scalar-card"));
      if (found.length < cards) return false;
      for (const card of found) {
        const text = card.innerText;
        if (!text.includes(last) || !runs.every((run) => text.includes(run))) return false;
      }
      return {signal: "every scalar card lists every run at the last step", t, charts: found.length};
    }"""
    wanted = [cards, list(runs), f"{last_step:,}"]
    handle = page.wait_for_function(script, arg=wanted, polling=50, timeout=timeout_s * 1e3)
    return dict(handle.json_value())


def measure_tensorboard(
    ids: Sequence[str], compared: Sequence[str], first_run: int, args: Any, folder: Path, browser: Any
) -> dict[str, Any]:
    logdir = folder / "tensorboard"
    started = time.perf_counter()
    write_tensorboard_logdir(logdir, compared, args.values, first_run)
    written_s = time.perf_counter() - started
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    output: list[str] = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    drain(process.stdout, output)
    result: dict[str, Any] = {
        "runs": len(compared),
        "events": len(compared) * len(METRICS) * args.values,
        "write_s": written_s,
        "logdir_bytes": sum(file.stat().st_size for file in logdir.rglob("*") if file.is_file()),
        "version": harness.package_versions(["tensorboard"]).get("tensorboard"),
    }
    try:
        if not poll(lambda: get(base + "data/runs", 5)[1] is not None, 120):
            raise RuntimeError(f"tensorboard did not answer: {output[-5:]}")
        result["listening_s"] = time.perf_counter() - started

        def scalars(run: str) -> list[Any]:
            query = urllib.parse.urlencode({"run": run, "tag": MEASURED_METRIC})
            return list(json.loads(get(base + "data/plugin/scalars/scalars?" + query, 30)[1]))

        def loaded() -> bool:
            return all((answer := scalars(run)) and answer[-1][1] == args.values for run in compared)

        if not poll(loaded, args.tensorboard_timeout, 0.25):
            raise RuntimeError(f"tensorboard did not serve every value within {args.tensorboard_timeout} s")
        result["loaded_s"] = time.perf_counter() - started
        rounds = []
        points = []
        for _ in range(args.repeats + 1):
            begun = time.perf_counter()
            answers = [scalars(run) for run in compared]
            rounds.append(time.perf_counter() - begun)
            points = [len(answer) for answer in answers]
        result["scalars_http"] = {
            **timing(rounds),
            "requests": len(compared),
            "route": "/data/plugin/scalars/scalars?run=R&tag=loss",
            "points_per_run": sorted(set(points)),
        }
        if browser is not None:
            try:
                shot = args.screenshots / "bench-tensorboard.png" if args.screenshots else None
                timeout = args.page_timeout
                pages = page_loads(
                    browser,
                    base + "?" + urllib.parse.urlencode({"tagFilter": "|".join(METRICS)}) + "#timeseries",
                    args.repeats,
                    lambda page: tensorboard_ready(page, len(METRICS), compared, args.values, timeout),
                    shot,
                    args.page_timeout,
                )
                result["page"] = pages
            except Exception as error:  # its front end is not ours: say so, keep the HTTP figures
                result["page"] = {"error": harness.error_text(error, 200)}
        result["memory"] = memory(process.pid, with_children=True)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return result


# -- the run ----------------------------------------------------------------------------------------


def measure(args: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        **harness.running_here(),
        "versions": harness.package_versions(["craft-callbacks", "playwright", "tensorboard", "matplotlib"]),
        "runs": args.runs,
        "lists": list(METRICS),
        "values": args.values,
        "chunk": args.chunk,
        "compare": args.compare,
        "metric": MEASURED_METRIC,
        "points": args.points,
        "repeats": args.repeats,
        "goals": {"page_ratio": PAGE_RATIO_GOAL, "points_factor": POINTS_FACTOR, "rss_mb": RSS_GOAL_MB},
    }
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        folder = Path(tmp)
        store = args.store or folder / "metrics.db"
        started = time.perf_counter()
        ids = store_matches(store, args.runs, args.values)
        reused = ids is not None
        if ids is None:
            if store.exists():
                raise SystemExit(f"{store} exists and does not hold this benchmark's data: remove it")
            ids = build_store(store, args.runs, args.values, args.chunk)
        result["store"] = {
            "seconds": time.perf_counter() - started,
            "reused": reused,
            "bytes": sum(p.stat().st_size for p in store.parent.glob(store.name + "*") if p.is_file()),
        }
        print(
            f"store: {args.runs} runs x {len(METRICS)} lists x {args.values:,} values "
            f"({'reused' if reused else 'written'} in {result['store']['seconds']:.1f} s, "
            f"{result['store']['bytes'] / MB:.0f} MB)",
            flush=True,
        )
        first = (args.runs - args.compare) // 2  # 10 runs from the middle of the store
        compared = ids[first : first + args.compare]
        result["compared"] = compared
        browser_cm: Any = contextlib.nullcontext(None)
        if args.no_browser:
            result["browser"] = {"skipped": "--no-browser"}
        else:
            missing = harness.not_installed("playwright")
            if missing is None and not (shutil.which("chromium") or shutil.which("chromium-browser")):
                missing = "no chromium on the PATH"
            if missing:
                result["browser"] = {"skipped": missing}
            else:
                browser_cm = chromium()
        with browser_cm as browser:
            with ui_server(store) as (process, url, startup, output):
                result["ui"] = {"startup_s": startup, "command": "craft-callbacks ui --store S --port 0"}
                result["api"] = measure_api(url, ids, compared, args)
                print(f"api: {json.dumps(summary_api(result['api']))}", flush=True)
                if browser is not None:
                    try:
                        result["browser"] = measure_browser(url, compared, args, browser)
                        print(f"compare page: {result['browser']['median_s']:.3f} s", flush=True)
                    except Exception as error:
                        result["browser"] = {"error": harness.error_text(error, 300)}
                        print(f"compare page: FAILED {result['browser']['error']}", flush=True)
                result["ui"]["memory"] = memory(process.pid)
                result["ui"]["log_tail"] = output[-5:]
            result["plot"] = measure_plot(store, compared, args.plot_repeats, folder)
            print(f"plot: {result['plot']['median_s']:.2f} s", flush=True)
            if args.no_tensorboard:
                result["tensorboard"] = {"skipped": "--no-tensorboard"}
            elif (missing := tensorboard_missing()) is not None:
                result["tensorboard"] = {"skipped": missing + " (the bench extra)"}
            else:
                try:
                    result["tensorboard"] = measure_tensorboard(ids, compared, first, args, folder, browser)
                except Exception as error:
                    result["tensorboard"] = {"error": harness.error_text(error, 300)}
                print(f"tensorboard: {json.dumps(summary_tensorboard(result['tensorboard']))}", flush=True)
    result["verdicts"] = verdicts(result)
    return result


def summary_api(api: dict[str, Any]) -> dict[str, Any]:
    return {
        "runs_ms": round(api["runs"]["median_s"] * 1e3, 1),
        "series_ms": round(api["series"]["median_s"] * 1e3, 1),
        "max_points": api["series"]["max_points"],
    }


def summary_tensorboard(tb: dict[str, Any]) -> dict[str, Any]:
    if "scalars_http" not in tb:
        return tb
    page = tb.get("page", {})
    return {
        "loaded_s": round(tb["loaded_s"], 2),
        "scalars_ms": round(tb["scalars_http"]["median_s"] * 1e3, 1),
        "page_s": round(page["median_s"], 3) if "median_s" in page else page.get("error"),
    }


def verdicts(result: dict[str, Any]) -> dict[str, Any]:
    """The three goals: each with its measured figure and pass (None where it could not be measured)."""
    browser, plot = result.get("browser", {}), result.get("plot", {})
    ratio = browser["median_s"] / plot["median_s"] if "median_s" in browser and plot.get("median_s") else None
    series = result["api"]["series"]
    hwm = result["ui"]["memory"].get("VmHWM")
    return {
        "page_ratio": {"ratio": ratio, "pass": None if ratio is None else ratio < PAGE_RATIO_GOAL},
        "points": {
            "max_points": series["max_points"],
            "limit": POINTS_FACTOR * result["points"],
            "pass": series["pass"],
        },
        "rss": {"peak_bytes": hwm, "pass": None if hwm is None else hwm < RSS_GOAL_MB * MB},
    }


# -- report -----------------------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:,.1f}"


def sec(seconds: float | None, digits: int = 2) -> str:
    return "-" if seconds is None else f"{seconds:,.{digits}f}"


def render(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    """This benchmark's section of BENCHMARKS.md, from its JSON result: the markdown lines, and its rows
    of the report's goals table (workload "(f) dashboard")."""
    api, ui, plot = result["api"], result["ui"], result.get("plot", {})
    browser, tb = result.get("browser", {}), result.get("tensorboard", {})
    judged = result["verdicts"]
    compared, points, values = len(result["compared"]), result["points"], result["values"]
    series = api["series"]
    rows: list[list[str]] = [
        [
            "ours: `GET /api/runs`",
            f"{result['runs']} runs listed ({api['runs']['bytes']:,} bytes)",
            ms(api["runs"]["first_s"]),
            f"**{ms(api['runs']['median_s'])}**",
        ],
        [
            "ours: `GET /api/runs/<id>`",
            "one run: scalars, hyperparameters, lists",
            ms(api["one_run"]["first_s"]),
            ms(api["one_run"]["median_s"]),
        ],
        [
            f"ours: `GET /api/series`, {compared} runs x `{result['metric']}`, points={points:,}",
            f"{series['min_points']:,}-{series['max_points']:,} points a run of {values:,} "
            f"({series['bytes']:,} bytes)",
            ms(series["first_s"]),
            f"**{ms(series['median_s'])}**",
        ],
    ]
    if "median_s" in browser:
        load = browser["loads"][0]
        clock = ", ".join(sec(one["page_ms"] / 1e3, 2) for one in browser["loads"])
        data_in = [one["data_in_ms"] / 1e3 for one in browser["loads"] if one.get("data_in_ms")]
        arrived = ", ".join(sec(value, 2) for value in data_in) or "-"
        rows.append(
            [
                f"ours: compare page of the {compared} runs in headless Chromium, until its charts are drawn",
                f"{load.get('charts') or '-'} charts, {load['requests']} requests; ready on: "
                f"{load['signal']}; on the page's clock, the last answer in at {arrived} s, ready at "
                f"{clock} s",
                ms(browser["first_s"]),
                f"**{ms(browser['median_s'])}**",
            ]
        )
    else:
        why = browser.get("error") or browser.get("skipped") or "not run"
        rows.append(["ours: compare page in headless Chromium", f"**not measured**: {why}", "-", "-"])
    if "median_s" in plot:
        rows.append(
            [
                f"`craft-callbacks plot` of the {compared} runs, `--metric {result['metric']}` (a process)",
                f"a PNG of {plot['png_bytes']:,} bytes; runs: {', '.join(sec(s) for s in plot['all_s'])} s",
                "-",
                f"**{ms(plot['median_s'])}**",
            ]
        )
    if "scalars_http" in tb:
        http = tb["scalars_http"]
        rows.append(
            [
                f"TensorBoard {tb.get('version')}: start until it serves every value of the {compared} runs",
                f"{tb['events']:,} scalar events in {tb['runs']} event files "
                f"({tb['logdir_bytes'] / MB:.0f} MB); listening after {sec(tb['listening_s'])} s",
                "-",
                ms(tb["loaded_s"]),
            ]
        )
        rows.append(
            [
                f"TensorBoard: `{http['route']}` for the {compared} runs ({http['requests']} requests)",
                f"{'/'.join(f'{n:,}' for n in http['points_per_run'])} points a run (its reservoir sample)",
                ms(http["first_s"]),
                f"**{ms(http['median_s'])}**",
            ]
        )
        page = tb.get("page", {})
        if "median_s" in page:
            rows.append(
                [
                    "TensorBoard: its time-series page in headless Chromium, until each scalar card is drawn",
                    f"{page['loads'][0].get('charts') or '-'} cards, {page['loads'][0]['requests']} requests",
                    ms(page["first_s"]),
                    f"**{ms(page['median_s'])}**",
                ]
            )
        elif page:
            rows.append(["TensorBoard: its time-series page", f"not measured: {page.get('error')}", "-", "-"])
    else:
        why = tb.get("error") or tb.get("skipped") or "not run"
        rows.append(["TensorBoard's scalars dashboard", f"**not measured**: {why}", "-", "-"])
    mem = ui["memory"]
    ratio = judged["page_ratio"]["ratio"]
    lines = [
        f"A store of **{result['runs']} runs x {len(result['lists'])} lists x {values:,} values** "
        f"({', '.join(f'`{name}`' for name in result['lists'])}; written with `LocalStore.write` in chunks "
        f"of {result['chunk']:,} steps, as the recorder's worker writes them; "
        f"{result['store']['bytes'] / MB:.0f} MB), one `{ui['command']}` process (its URL line after "
        f"{sec(ui['startup_s'])} s). The {compared} runs compared are runs {result['compared'][0]} to "
        f"{result['compared'][-1]}. HTTP times: to the last byte of the answer, a new connection each "
        f"request; *first* is the first request of its kind, *median* the median of the {result['repeats']} "
        "after it. Page times: from the navigation to the page's ready signal, a fresh browser context "
        "(no cache) each load, the browser already started.",
        "",
        *table(["what", "detail", "first ms", "median ms"], rows),
        "",
        f"Memory of the `ui` process: **{mem['VmHWM'] / MB:.1f} MB** at its peak (`VmHWM`), "
        f"{mem['VmRSS'] / MB:.1f} MB resident at the end (`VmRSS`), MB = MiB."
        if mem.get("VmHWM")
        else "Memory of the `ui` process: not read (no /proc).",
    ]
    if "memory" in tb and tb["memory"].get("VmHWM"):
        lines[-1] += (
            f" TensorBoard's processes ({tb['memory']['processes']}, its data server included): "
            f"{tb['memory']['VmHWM'] / MB:.0f} MB at their peaks summed."
        )
    lines += [
        "",
        f"The compare page draws one chart per list metric ({len(result['lists'])} here) of the {compared} "
        f"runs, fetching each through `/api/series`; `plot` draws the one metric asked for. "
        + (
            f"Page / plot: **{ratio:.3f}** (goal: under {PAGE_RATIO_GOAL})."
            if ratio is not None
            else "Page / plot: not measured."
        )
        + " `plot` is what a user waits for at the command line (Python's start and matplotlib's import "
        "included); the page is what a user waits for with the dashboard already running.",
    ]
    timed = [one for one in browser.get("loads", []) if one.get("data_in_ms") and one.get("page_ms")]
    if timed:
        arrived = statistics.median(one["data_in_ms"] for one in timed) / 1e3
        drawing = statistics.median(one["page_ms"] - one["data_in_ms"] for one in timed)
        series_calls = sum(
            1 for path, _ in timed[0].get("request_ms", []) if str(path).startswith("/api/series")
        )
        lines[-1] += (
            f" Where the page's time goes (medians over its loads, on its own clock): its last answer "
            f"arrived at {arrived:.2f} s and its charts were drawn {drawing:,.0f} ms later. It asks "
            f"`/api/series` {series_calls} times at once (one per metric, each for the {compared} runs), "
            f"which the one `ui` process answers in threads that Python runs one at a time; one such "
            f"answer alone takes {ms(series['median_s'])} ms (above)."
        )
    if "scalars_http" in tb:
        lines += [
            "",
            "TensorBoard reads the same values of the same runs (all 4 lists, steps 1..N, float32 as "
            "TensorBoard stores them) from event files written for it, holding only the compared runs; it "
            "loads them in the background after it starts, then answers from memory with a reservoir "
            "sample (1,000 points a run and tag by default), one run per request on its scalars route.",
        ]
    passes = judged["points"]
    goals = [
        Goal(
            WORKLOAD,
            "the compare page ready in under a quarter of `plot`'s time",
            f"{ms(browser.get('median_s'))} ms / {ms(plot.get('median_s'))} ms = "
            + (f"{ratio:.3f}" if ratio is not None else "-"),
            judged["page_ratio"]["pass"],
        ),
        Goal(
            WORKLOAD,
            f"at most 2 x {points:,} points per run in a series answer",
            f"at most {passes['max_points']:,} points a run ({compared} runs of {values:,} values; first and "
            f"last step kept: {'yes' if series['ends_kept'] else 'no'})",
            passes["pass"],
        ),
        Goal(
            WORKLOAD,
            f"memory of the `ui` process under {RSS_GOAL_MB:g} MB",
            f"{mem['VmHWM'] / MB:.1f} MB at its peak (VmHWM)" if mem.get("VmHWM") else "not read",
            judged["rss"]["pass"],
        ),
    ]
    return lines, goals


def main() -> int:
    parser = harness.arg_parser(__doc__)
    parser.add_argument("--runs", type=int, default=50, help="runs in the store (50)")
    parser.add_argument("--values", type=int, default=50_000, help="values per list (50,000)")
    parser.add_argument("--chunk", type=int, default=1_000, help="steps per write (1,000)")
    parser.add_argument("--compare", type=int, default=10, help="runs compared (10)")
    parser.add_argument("--points", type=int, default=1_000, help="points= of the series request (1,000)")
    parser.add_argument("--repeats", type=int, default=5, help="measured requests and page loads (5)")
    parser.add_argument("--plot-repeats", type=int, default=3, help="runs of craft-callbacks plot (3)")
    parser.add_argument("--store", type=Path, help="keep the store here (reused when it holds the data)")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium measurements")
    parser.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard")
    parser.add_argument("--tensorboard-timeout", type=float, default=300.0, help="seconds to load (300)")
    parser.add_argument("--page-timeout", type=float, default=120.0, help="seconds a page may take (120)")
    parser.add_argument("--screenshots", type=Path, help="save a screenshot of each page measured here")
    parser.add_argument(
        "--small", action="store_true", help="the smoke size: 12 runs x 3,000 values, 1 repeat, 1 plot"
    )
    args = parser.parse_args()
    if args.small:
        args.runs, args.values, args.repeats, args.plot_repeats = 12, 3_000, 1, 1
    if not 1 <= args.compare <= args.runs or args.values < 1 or args.points < 1 or args.repeats < 1:
        parser.error("need 1 <= --compare <= --runs, and --values, --points, --repeats at least 1")
    if args.plot_repeats < 1 or args.chunk < 1:
        parser.error("--plot-repeats and --chunk must be at least 1")
    json_path = args.json.resolve() if args.json else None
    harness.clear_environ((*harness.PLATFORM_ENV, "CRAFT_CALLBACKS_STORE"))
    result = measure(args)
    lines, goals = render(result)
    print("\n" + "\n".join(lines))
    print()
    harness.print_goals([{"goal": goal.goal, "detail": goal.measured, "pass": goal.passed} for goal in goals])
    harness.write_json(json_path, result)
    return 0 if "error" not in result.get("browser", {}) else 1


if __name__ == "__main__":
    sys.exit(main())
