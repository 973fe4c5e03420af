"""The dashboard (``craft-callbacks ui``) and the report in a real browser.

Headless Chromium from Debian's package (``apt-get install chromium``; scripts/check.sh
installs it), driven by Playwright for Python through ``executable_path``: Playwright's
own browser download cannot reach its servers from these machines. A missing chromium
or playwright FAILS these tests, with the command that fixes it: they are never skipped.

The server is the real one (:func:`craft_callbacks.cli.ui.server.serve`) on a real store the
tests record with ``MetricRecorder``. Screenshots of each page go to ``$UI_SCREENSHOTS``
(default ``<repo>/ui-screenshots/``) for a person to look at.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from craft_callbacks import LocalStore, MetricRecorder
from craft_callbacks.cli import main as cli_main
from craft_callbacks.cli.ui.server import serve

REPO = Path(__file__).resolve().parent.parent
SHOTS = Path(os.environ.get("UI_SCREENSHOTS") or REPO / "ui-screenshots")
XSS_VALUE = '<img src=x onerror="window.__xss=1">'
XSS_PIPELINE = '<img src=x onerror="window.__xss=2">'
XSS_KEY = "<b onmouseover=window.__xss=3>key</b>"
POLL_MS = 500  # the pages poll every 3 s; the tests make it quicker (window.craftUiPollMs)
VIEWPORT = {"width": 1400, "height": 1000}
BLUE, ORANGE, GREEN = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C)  # app.js's palette


# -- the store, the server, the browser ---------------------------------------------------


def _record(
    store: LocalStore,
    pipeline: str,
    hyperparameters: dict[str, Any],
    scale: float,
    final: dict[str, float],
    steps: int = 3000,
) -> str:
    with MetricRecorder(store, pipeline_name=pipeline, hyperparameters=hyperparameters) as recorder:
        for step in range(steps):
            noise = 0.15 * math.sin(step * 1.7) * math.cos(step * 0.31)
            loss = 2.5 * math.exp(-step / (600 * scale)) + 0.3 + noise
            recorder.log_step(
                {"loss": loss, "learning_rate": hyperparameters["learning_rate"] * (1 - step / steps)}, step
            )
            if step % 100 == 99:
                recorder.log_step({"eval_loss": loss + 0.1, "eval_accuracy": 1 - loss / 3}, step)
        recorder.log_final(final)
    return recorder.execution_id


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store of five runs: two of one pipeline, one of another, an HF-sized one, a hostile one."""
    path = tmp_path_factory.mktemp("ui") / "metrics.db"
    store = LocalStore(path)
    common = {"per_device_train_batch_size": 32, "optim": "adamw", "seed": 42, "model": {"layers": 4}}
    ids = {
        "a": _record(
            store,
            "bert-finetune",
            {**common, "learning_rate": 1e-3, "note": XSS_VALUE},
            1.0,
            {"accuracy": 0.80, "f1": 0.70},
        ),
        "b": _record(
            store, "bert-finetune", {**common, "learning_rate": 3e-4}, 1.4, {"accuracy": 0.84, "f1": 0.75}
        ),
        "c": _record(
            store,
            "gpt2-tiny",
            {**common, "learning_rate": 1e-3, "per_device_train_batch_size": 64},
            1.8,
            {"accuracy": 0.88, "f1": 0.80},
        ),
    }
    hf = {f"arg_{i:03d}": i for i in range(165)}
    hf.update(learning_rate=5e-5, warmup_ratio=0.1, lr_scheduler_type="linear", output_dir="out", fp16=False)
    ids["hf"] = _record(store, "hf-trainer", hf, 1.0, {"train_runtime": 12.5}, steps=400)
    ids["x"] = _record(
        store, XSS_PIPELINE, {"learning_rate": 1e-3, XSS_KEY: XSS_VALUE}, 1.0, {"accuracy": 0.5}, steps=200
    )
    return {"path": path, "ids": ids}


@pytest.fixture(scope="module")
def url(runs: dict[str, Any]) -> Iterator[str]:
    server, address = serve(runs["path"], port=0)
    server.start()
    try:
        yield address
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail(
            "the browser tests need Debian's chromium, which is not installed: run "
            "`apt-get install -y chromium` (scripts/check.sh installs it when missing)",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need playwright: pip install -e '.[test]'", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


class Errors(list[str]):
    """JavaScript errors and console errors of a page (a failed request is not one)."""

    def watch(self, page: Any) -> Any:
        page.on("pageerror", lambda error: self.append(f"pageerror: {error}"))
        page.on(
            "console",
            lambda message: (
                self.append(f"console: {message.text}")
                if message.type == "error" and "Failed to load resource" not in message.text
                else None
            ),
        )
        return page


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(f"window.craftUiPollMs = {POLL_MS};")
    errors = Errors()
    opened = errors.watch(context.new_page())
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        context.close()
    assert not errors, errors


def _shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _row_ids(page: Any) -> list[str]:
    return page.eval_on_selector_all("#runs tbody tr[data-run-id]", "rows => rows.map(r => r.dataset.runId)")


def _wait_rows(page: Any, count: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('#runs tbody tr[data-run-id]').length === n", arg=count
    )


# Pixels of a chart's canvas near a colour: the line of that run is drawn.
COLOUR_PIXELS = """([selector, rgb]) => {
  const canvas = document.querySelector(selector + " canvas");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 200 && Math.abs(data[i] - rgb[0]) + Math.abs(data[i + 1] - rgb[1])
        + Math.abs(data[i + 2] - rgb[2]) < 60) n++;
  }
  return n;
}"""
# The first run's plotted line (its index in uPlot's table: after x and the k faint raw lines).
PLOTTED = """metric => {
  const chart = window.craftUi.charts.get(metric);
  const k = chart.set.runs.length;
  return chart.u.data[1 + k].filter(v => v !== null);
}"""
CANVAS_PNG = "selector => document.querySelector(selector + ' canvas').toDataURL()"


def _variation(values: list[float]) -> float:
    return sum(abs(b - a) for a, b in itertools.pairwise(values))


def _set_range(page: Any, selector: str, value: float) -> None:
    page.eval_on_selector(
        selector,
        "(input, value) => { input.value = String(value);"
        " input.dispatchEvent(new Event('input', {bubbles: true})); }",
        value,
    )


def _no_markup_ran(page: Any) -> None:
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img, main b").count() == 0


# -- the runs page ---------------------------------------------------------------------------


def test_runs_page_shows_every_run(page: Any, url: str, runs: dict[str, Any]) -> None:
    page.goto(url)
    _wait_rows(page, len(runs["ids"]))
    assert set(_row_ids(page)) == set(runs["ids"].values())
    a = page.locator(f'#runs tbody tr[data-run-id="{runs["ids"]["a"]}"]')
    assert "bert-finetune" in a.inner_text()
    assert a.locator(".status").inner_text() == "success"
    assert a.locator("td.id a").get_attribute("href") == "/run/" + runs["ids"]["a"]
    # The main scalars are columns; the store's path and the live status are shown.
    headers = page.eval_on_selector_all("#runs thead th[data-col]", "ths => ths.map(t => t.dataset.col)")
    assert headers[:5] == ["id", "pipeline", "status", "created", "duration"]
    assert {"scalar:accuracy", "scalar:loss", "scalar:f1"} <= set(headers)
    assert page.locator("#store").inner_text() == str(runs["path"])
    assert "live" in page.locator("#live-status").inner_text()
    assert page.locator("#run-count").inner_text() == "5 runs"
    # A hyperparameter as a column, on demand.
    page.click("#column-chooser summary")
    page.check('[data-column="hp:learning_rate"]')
    page.click("#column-chooser summary")
    headers = page.eval_on_selector_all("#runs thead th[data-col]", "ths => ths.map(t => t.dataset.col)")
    nth = headers.index("hp:learning_rate") + 2  # 1-based, after the checkboxes' column
    column = page.eval_on_selector_all(
        f"#runs tbody tr[data-run-id] td:nth-child({nth})", "cells => cells.map(c => c.textContent)"
    )
    assert sorted(column) == sorted(["0.001", "0.0003", "0.001", "0.00005", "0.001"])
    _shot(page, "runs")


def test_runs_page_sorts_and_filters(page: Any, url: str, runs: dict[str, Any]) -> None:
    ids = runs["ids"]
    page.goto(url)
    _wait_rows(page, len(ids))
    header = page.locator('#runs th[data-col="scalar:accuracy"]')
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "descending"
    order = _row_ids(page)
    assert order[:4] == [ids["c"], ids["b"], ids["a"], ids["x"]]  # missing values last
    assert order[4] == ids["hf"]
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert _row_ids(page)[:4] == [ids["x"], ids["a"], ids["b"], ids["c"]]
    assert page.locator('#runs th[data-col="created"]').get_attribute("aria-sort") == "none"
    page.locator('#runs th[data-col="pipeline"] button').click()
    pipelines = page.eval_on_selector_all(
        "#runs tbody tr[data-run-id] td:nth-child(3)", "cells => cells.map(c => c.textContent)"
    )
    assert pipelines == sorted(pipelines)

    def shown(text: str) -> set[str]:
        page.fill("#filter", text)
        return set(_row_ids(page))

    assert shown("learning_rate=0.001") == {ids["a"], ids["c"], ids["x"]}
    assert shown("learning_rate=1e-3 per_device_train_batch_size=64") == {ids["c"]}
    # learning_rate is a scalar (its list's last value) and a hyperparameter: the prefix picks one.
    assert shown("hp:learning_rate>=0.001") == {ids["a"], ids["c"], ids["x"]}
    assert shown("scalar:learning_rate<1e-5") == set(ids.values())
    assert shown("accuracy>=0.84") == {ids["b"], ids["c"]}
    assert shown("accuracy<0.84 f1>0") == {ids["a"]}
    assert shown("optim=adamw pipeline~bert") == {ids["a"], ids["b"]}
    assert shown("gpt2") == {ids["c"]}
    assert shown(ids["hf"][-6:]) == {ids["hf"]}
    assert shown("status=success") == set(ids.values())
    assert page.locator("#filter-note").is_hidden()
    assert shown("nosuchkey=1") == set()
    assert "nosuchkey" in page.locator("#filter-note").inner_text()
    assert "No run matches" in page.locator("#runs tbody").inner_text()
    assert "q=nosuchkey%3D1" in page.url  # the filter is in the address, to bookmark
    assert shown("") == set(ids.values())

    # Select two runs and compare them.
    assert page.get_attribute("#compare", "aria-disabled") == "true"
    page.check(f'input.select[data-run-id="{ids["a"]}"]')
    page.check(f'input.select[data-run-id="{ids["b"]}"]')
    assert page.get_attribute("#compare", "href") == f"/compare?runs={ids['a']},{ids['b']}"
    assert page.locator("#compare").inner_text() == "Compare 2 runs"
    page.click("#compare")
    page.wait_for_selector("body[data-state=ready]")
    assert page.url.endswith(f"/compare?runs={ids['a']},{ids['b']}")
    assert page.locator("#run-key li").count() == 2


# -- the compare page ------------------------------------------------------------------------


def test_compare_page_draws_smooths_hovers_and_zooms(page: Any, url: str, runs: dict[str, Any]) -> None:
    ids = runs["ids"]
    page.goto(f"{url}compare?runs={ids['a']},{ids['b']},{ids['c']}")
    page.wait_for_selector("body[data-state=ready]")
    charts = page.eval_on_selector_all(".chart", "cs => cs.map(c => [c.dataset.metric, c.dataset.state])")
    # One chart per list metric, losses first, each drawn.
    assert [name for name, _ in charts] == ["eval_loss", "loss", "eval_accuracy", "learning_rate"]
    assert all(state == "drawn" for _, state in charts)
    for name, _ in charts:  # (learning_rate: a and c have the same, c's line covers a's)
        assert page.evaluate(COLOUR_PIXELS, [f'.chart[data-metric="{name}"]', GREEN]) > 50, name
    for colour in (BLUE, ORANGE, GREEN):
        assert page.evaluate(COLOUR_PIXELS, ['.chart[data-metric="loss"]', colour]) > 50, colour
    # Legends: pipeline and short id, and the hyperparameters that differ.
    key = page.locator(f'#run-key li[data-run="{ids["b"]}"]').inner_text()
    assert "bert-finetune · " + ids["b"].rsplit("-", 1)[1] in key
    assert "learning_rate=0.0003" in key and "per_device_train_batch_size=32" in key
    assert "seed" not in key  # the same in every run
    # The series answer was downsampled: at most 2 x points per run.
    note = page.locator('.chart[data-metric="loss"] .chart-note').inner_text()
    assert "downsampled" in note and "of 9,000" in note
    per_run = page.evaluate(
        "() => Array.from(window.craftUi.charts.get('loss').overview.values()).map(s => s.steps.length)"
    )
    points = page.evaluate("() => window.craftUi.charts.get('loss').pointsWanted()")
    assert len(per_run) == 3 and all(0 < n <= 2 * points for n in per_run)

    # Hover: the step and each run's value.
    over = page.locator('.chart[data-metric="loss"] .u-over')
    box = over.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    step_text = page.locator('.chart[data-metric="loss"] .readout-step').inner_text()
    assert re.fullmatch(r"step [\d,]+", step_text), step_text
    values = page.eval_on_selector_all(
        '.chart[data-metric="loss"] .readout-row .value', "vs => vs.map(v => v.textContent)"
    )
    assert len(values) == 3 and all(re.fullmatch(r"-?[\d.]+(e-?\d+)?", v) for v in values), values
    # The cursor is synchronised: the other charts show a step too.
    assert page.locator('.chart[data-metric="eval_loss"] .readout-step').inner_text().startswith("step ")
    _shot(page, "compare-hover")
    page.mouse.move(0, 0)

    # Smoothing changes the drawn line (and smooths it), and shows the raw one faintly.
    raw_png = page.evaluate(CANVAS_PNG, '.chart[data-metric="loss"]')
    raw = page.evaluate(PLOTTED, "loss")
    _set_range(page, "#smoothing", 0.9)
    assert page.locator("#smoothing-value").inner_text() == "0.9"
    smoothed = page.evaluate(PLOTTED, "loss")
    assert len(smoothed) == len(raw) and smoothed != raw
    assert _variation(smoothed) < 0.5 * _variation(raw)
    assert page.evaluate(CANVAS_PNG, '.chart[data-metric="loss"]') != raw_png
    assert page.evaluate("() => window.craftUi.charts.get('loss').u.series[1].show") is True
    assert "smoothing=0.9" in page.url
    _shot(page, "compare")
    _set_range(page, "#smoothing", 0)
    assert page.evaluate(PLOTTED, "loss") == raw

    # Log scale.
    page.check("#log-scale")
    assert page.evaluate("() => window.craftUi.charts.get('loss').u.scales.y.distr") == 3
    assert page.evaluate(COLOUR_PIXELS, ['.chart[data-metric="loss"]', BLUE]) > 50
    page.uncheck("#log-scale")
    assert page.evaluate("() => window.craftUi.charts.get('loss').u.scales.y.distr") == 1

    # Drag to zoom: full resolution in the range; then reset.
    over = page.locator('.chart[data-metric="loss"] .u-over')
    box = over.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.40, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=5)
    page.mouse.up()
    page.wait_for_selector('.chart[data-metric="loss"].zoomed')
    note = page.locator('.chart[data-metric="loss"] .chart-note')
    page.wait_for_function(
        "note => note.textContent.includes('in range, full resolution')", arg=note.element_handle()
    )
    scale = page.evaluate("() => window.craftUi.charts.get('loss').u.scales.x")
    assert 0 < scale["max"] - scale["min"] < 400
    in_view = page.evaluate(
        "([lo, hi]) => window.craftUi.charts.get('loss').u.data[0].filter(x => x >= lo && x <= hi).length",
        [scale["min"], scale["max"]],
    )
    assert in_view >= int(scale["max"]) - math.ceil(scale["min"])  # every step in the range
    assert page.is_enabled("#reset-zoom")
    page.click("#reset-zoom")
    page.wait_for_selector('.chart[data-metric="loss"]:not(.zoomed)')
    scale = page.evaluate("() => window.craftUi.charts.get('loss').u.scales.x")
    assert (scale["min"], scale["max"]) == (0, 2999)
    assert page.is_disabled("#reset-zoom")

    # Scalars and hyperparameters side by side, differences marked by a symbol, a colour and text.
    rate = page.locator('#params tr[data-key="learning_rate"]').last
    assert "differs" in (rate.get_attribute("class") or "")
    assert "≠" in rate.inner_text() and "differs" in rate.inner_text()
    assert page.eval_on_selector(
        '#params tbody[data-group="hyperparameters"] tr[data-key="learning_rate"] td.key',
        "td => getComputedStyle(td).backgroundColor",
    ) not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")
    seed = page.locator('#params tbody[data-group="hyperparameters"] tr[data-key="seed"]')
    assert "differs" not in seed.inner_text()
    page.check("#only-diff")
    assert seed.count() == 0
    assert (
        page.locator('#params tbody[data-group="hyperparameters"] tr[data-key="learning_rate"]').count() == 1
    )


def test_compare_page_names_an_unknown_run(page: Any, url: str, runs: dict[str, Any]) -> None:
    page.goto(f"{url}compare?runs={runs['ids']['a']},no-such-run")
    page.wait_for_selector("body[data-state=ready]")
    assert "no-such-run" in page.locator("#errors").inner_text()
    assert page.locator("#run-key li").count() == 1
    assert page.locator(".chart[data-state=drawn]").count() == 4


# -- the run page ----------------------------------------------------------------------------


def test_run_page_collapses_and_filters_many_hyperparameters(
    page: Any, url: str, runs: dict[str, Any]
) -> None:
    run_id = runs["ids"]["hf"]
    page.goto(f"{url}run/{run_id}")
    page.wait_for_selector("body[data-state=ready]")
    assert page.locator("#title").inner_text() == "hf-trainer · " + run_id.rsplit("-", 1)[1]
    assert page.locator(".chart[data-state=drawn]").count() == 4
    assert page.evaluate(COLOUR_PIXELS, ['.chart[data-metric="loss"]', BLUE]) > 50
    assert page.locator('#scalars tr[data-key="train_runtime"]').inner_text().split() == [
        "train_runtime",
        "12.5",
    ]
    assert page.locator('#lists tr[data-key="loss"]').inner_text().split()[:2] == ["loss", "400"]
    details = page.locator("#hyperparameters")
    assert details.get_attribute("open") is None  # 170 arguments start collapsed
    assert "(170)" in page.locator("#hp-summary").inner_text()
    assert page.locator("#hp-filter").is_hidden()
    page.click("#hp-summary")
    page.fill("#hp-filter", "learning")
    visible = page.eval_on_selector_all(
        "#hp-table tr[data-key]:not([hidden])", "rows => rows.map(r => r.dataset.key)"
    )
    assert visible == ["learning_rate"]
    assert page.locator("#hp-count").inner_text() == "1 of 170 shown"
    page.fill("#hp-filter", "linear")  # values match too
    assert page.eval_on_selector_all(
        "#hp-table tr[data-key]:not([hidden])", "rows => rows.map(r => r.dataset.key)"
    ) == ["lr_scheduler_type"]
    page.fill("#hp-filter", "")
    _shot(page, "run")


def test_strings_from_the_store_are_text(page: Any, url: str, runs: dict[str, Any]) -> None:
    ids = runs["ids"]
    page.goto(url)
    _wait_rows(page, len(ids))
    page.click("#column-chooser summary")
    page.check('[data-column="hp:note"]')
    page.click("#column-chooser summary")
    assert page.locator(f'#runs tr[data-run-id="{ids["a"]}"]').get_by_text(XSS_VALUE, exact=True).is_visible()
    assert (
        page.locator(f'#runs tr[data-run-id="{ids["x"]}"]').get_by_text(XSS_PIPELINE, exact=True).is_visible()
    )
    _no_markup_ran(page)

    page.goto(f"{url}compare?runs={ids['a']},{ids['x']}")
    page.wait_for_selector("body[data-state=ready]")
    assert page.locator('#params tr[data-key="note"] td.val').first.inner_text() == XSS_VALUE
    assert page.locator(f'#params tr[data-key="{XSS_KEY}"] td.key').inner_text() == XSS_KEY
    assert XSS_PIPELINE in page.locator(f'#run-key li[data-run="{ids["x"]}"]').inner_text()
    _no_markup_ran(page)

    page.goto(f"{url}run/{ids['x']}")
    page.wait_for_selector("body[data-state=ready]")
    assert page.locator("#title").inner_text().startswith(XSS_PIPELINE)
    assert page.locator(f'#hp-table tr[data-key="{XSS_KEY}"]').inner_text().split("\t") == [
        XSS_KEY,
        XSS_VALUE,
    ]
    _no_markup_ran(page)


# -- live ------------------------------------------------------------------------------------


def test_a_run_appears_and_grows_while_the_page_is_open(browser: Any, tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    store = LocalStore(path)
    first = _record(store, "baseline", {"learning_rate": 1e-3}, 1.0, {"accuracy": 0.5}, steps=100)
    server, address = serve(path, port=0)
    server.start()
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(f"window.craftUiPollMs = {POLL_MS};")
    errors = Errors()
    page = errors.watch(context.new_page())
    page.set_default_timeout(15_000)
    recorder = None
    try:
        page.goto(address)
        _wait_rows(page, 1)
        recorder = MetricRecorder(
            store, pipeline_name="live-run", hyperparameters={"learning_rate": 3e-4}, flush_interval=0.05
        )
        for step in range(50):
            recorder.log_step({"loss": 3.0 - step * 0.01}, step)
        assert recorder.flush(10)
        # The new run appears in the table without a reload, running.
        row = page.locator(f'#runs tbody tr[data-run-id="{recorder.execution_id}"]')
        row.wait_for()
        assert row.locator(".status").inner_text() == "running"
        _wait_rows(page, 2)

        page.goto(f"{address}compare?runs={first},{recorder.execution_id}")
        page.wait_for_selector("body[data-state=ready]")
        assert "live" in page.locator("#live-status").inner_text()
        chart = '.chart[data-metric="loss"]'
        before = int(page.get_attribute(chart, "data-points") or 0)
        assert before == 150
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        for step in range(50, 120):
            recorder.log_step({"loss": 3.0 - step * 0.01, "eval_loss": 2.0 - step * 0.01}, step)
        assert recorder.flush(10)
        # The chart grows, fetching only the new points; a new metric gets its chart.
        page.wait_for_function(
            "([selector, n]) => Number(document.querySelector(selector).dataset.points) >= n",
            arg=[chart, 220],
        )
        assert page.evaluate("() => window.craftUi.charts.get('loss').u.data[0].at(-1)") == 119
        page.wait_for_selector('.chart[data-metric="eval_loss"][data-state=drawn]')
        # (the new chart holds every run's points of it, the finished run's too)
        page.wait_for_function(
            "() => document.querySelectorAll('.chart[data-metric=\"eval_loss\"] .readout-row').length === 2"
        )
        assert page.evaluate("() => window.craftUi.charts.get('eval_loss').overview.size") == 2
        grown = [u for u in requests if "/api/series" in u and "metric=loss" in u]
        assert grown and all("after=" in u for u in grown)
        assert all(recorder.execution_id in u and first not in u for u in grown)  # only the running run
        recorder.close()
        page.wait_for_function(
            "id => document.querySelector(`#run-key li[data-run='${id}'] .status`).textContent === 'success'",
            arg=recorder.execution_id,
        )
        page.wait_for_function(
            "() => !document.querySelector('#live-status').textContent.includes('running')"
        )
        _shot(page, "compare-live")
    finally:
        if recorder is not None and not recorder.closed:
            recorder.close()
        context.close()
        server.stop()
    assert not errors, errors


# -- the report ------------------------------------------------------------------------------


def test_report_opens_from_disk_with_the_network_blocked(
    browser: Any, runs: dict[str, Any], tmp_path: Path
) -> None:
    ids = runs["ids"]
    output = tmp_path / "report.html"
    assert (
        cli_main(["report", ids["a"], ids["b"], ids["c"], "-o", str(output), "--store", str(runs["path"])])
        == 0
    )
    context = browser.new_context(viewport=VIEWPORT, offline=True)
    requested: list[str] = []

    def only_the_file(route: Any) -> None:
        requested.append(route.request.url)
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_the_file)
    errors = Errors()
    page = errors.watch(context.new_page())
    page.set_default_timeout(15_000)
    try:
        page.goto(output.as_uri())
        page.wait_for_selector("body[data-state=ready]")
        assert page.locator("#title").inner_text() == "Report: 3 runs"
        assert page.locator(".chart[data-state=drawn]").count() == 4
        for name in ("loss", "eval_loss", "eval_accuracy", "learning_rate"):
            assert page.evaluate(COLOUR_PIXELS, [f'.chart[data-metric="{name}"]', GREEN]) > 50, name
        assert page.locator("#live-status").is_hidden()
        assert page.locator("#run-key a").count() == 0  # no links to a server that is not there
        assert page.locator('#params tr[data-key="note"] td.val').first.inner_text() == XSS_VALUE
        raw = page.evaluate(PLOTTED, "loss")
        _set_range(page, "#smoothing", 0.8)
        assert _variation(page.evaluate(PLOTTED, "loss")) < _variation(raw)
        box = page.locator('.chart[data-metric="loss"] .u-over').bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
        assert page.locator('.chart[data-metric="loss"] .readout-step').inner_text().startswith("step ")
        _shot(page, "report")
        assert page.evaluate("window.__xss") is None
    finally:
        context.close()
    assert requested and all(u.startswith(("file:", "data:")) for u in requested), requested
    assert not errors, errors


def test_pages_load_only_the_package_files(url: str) -> None:
    """Every page loads app.css, uPlot and app.js from /static/ and nothing from elsewhere."""
    for path in ("", "compare?runs=x", "run/x"):
        with urllib.request.urlopen(url + path) as answer:
            html = answer.read().decode()
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert {
            "/static/app.css",
            "/static/vendor/uPlot.min.css",
            "/static/vendor/uPlot.iife.min.js",
            "/static/app.js",
        } <= set(sources)
        assert all(s.startswith(("/", "data:")) and not s.startswith("//") for s in sources), sources
    with urllib.request.urlopen(url + "static/vendor/VERSION") as answer:
        assert re.fullmatch(r"uplot@\d+\.\d+\.\d+\n", answer.read().decode())
    json.loads(urllib.request.urlopen(url + "api/runs").read())
