"""``craft-callbacks report``: the compare page as one self-contained HTML file.

The dashboard's own compare page (``static/compare.html``) is read from the
package, and each ``<script src="/static/...">`` and ``<link rel="stylesheet"
href="/static/...">`` it has is replaced by the file's text inline (other local
files, an icon say, become ``data:`` URIs); a reference to anything on the
network is dropped. The data the page would fetch from ``/api/`` (each run as
``/api/runs/<id>`` answers, each list metric as ``/api/series`` answers,
downsampled to ``points`` per run) goes into one
``<script type="application/json" id="report-data">`` block, with every ``<``,
``>`` and ``&`` written as a JSON escape: no string from the store can close the
block or open a tag. A Content-Security-Policy in the page allows only its own
inline scripts (by their hashes) and no connection at all: the file works, and
can only work, without a network.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from craft_callbacks.cli.ui import api
from craft_callbacks.cli.ui.server import STATIC_DIR, static_file
from craft_callbacks.exceptions import CraftCallbacksError
from craft_callbacks.sinks.local_store import ReadOnlyStore, utc_now

DEFAULT_REPORT_POINTS: Final = 2000
DATA_BLOCK_ID: Final = "report-data"
REPORT_FORMAT: Final = 1

_PLACEHOLDER: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>craft-callbacks report</title></head>
<body><h1>craft-callbacks report</h1><pre id="summary"></pre>
<script>
const data = JSON.parse(document.getElementById("report-data").textContent);
document.getElementById("summary").textContent = data.runs
  .map((run) => [run.id, run.pipeline || "", run.status, Object.keys(run.lists).join(" ")].join("  "))
  .join("\\n");
</script>
</body></html>
"""
_SCRIPT_TAG: Final = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_LINK_TAG: Final = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
_MEDIA_TAG: Final = re.compile(r"<(?:img|source)\b[^>]*>", re.IGNORECASE)
_ATTRIBUTE: Final = re.compile(
    r"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""", re.DOTALL
)
_CLOSE_SCRIPT: Final = re.compile(r"</(script)", re.IGNORECASE)
_CLOSE_STYLE: Final = re.compile(r"</(style)", re.IGNORECASE)
_REMOTE: Final = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)


def report_data(store: ReadOnlyStore, references: Sequence[str], points: int) -> dict[str, Any]:
    """What the report's page shows: the runs (as ``/api/runs/<id>``) and every list metric of any of
    them (as ``/api/series`` at ``points`` per run), under ``"series"`` by metric name."""
    runs: dict[str, dict[str, Any]] = {}
    for reference in references:
        try:
            found = api.run(store, reference)
        except api.ApiError as error:
            raise CraftCallbacksError(error.message) from error
        runs.setdefault(found["id"], found)
    ids = list(runs)
    metrics = sorted({name for found in runs.values() for name in found["lists"]})
    return {
        "format": REPORT_FORMAT,
        "generated_at": utc_now(),
        "store": str(store.path),
        "points": points,
        "runs": list(runs.values()),
        "metrics": metrics,
        "series": {metric: api.series_of(store, ids, metric, points) for metric in metrics},
    }


def render(data: dict[str, Any], static_dir: Path = STATIC_DIR) -> str:
    """The compare page, its scripts, styles and ``data`` inline, with a policy that forbids the network."""
    page = static_dir / "compare.html"
    if not page.is_file():
        page = static_dir / "index.html"
    html = _text(page) if page.is_file() else _PLACEHOLDER
    html, deferred = _inline_scripts(html, static_dir)
    html = _LINK_TAG.sub(lambda match: _inline_link(match.group(0), static_dir), html)
    html = _MEDIA_TAG.sub(lambda match: _inline_media(match.group(0), static_dir), html)
    block = f'<script type="application/json" id="{DATA_BLOCK_ID}">{embed_json(data)}</script>\n'
    first_script = re.search(r"<script\b", html, re.IGNORECASE)
    if first_script is not None:
        html = html[: first_script.start()] + block + html[first_script.start() :]
    else:
        html = _before_body_end(html, block)
    if deferred:
        html = _before_body_end(html, "".join(deferred))
    return _with_policy(html)


def write_report(
    store_path: str | os.PathLike[str] | None,
    references: Sequence[str],
    output: str | os.PathLike[str],
    points: int = DEFAULT_REPORT_POINTS,
) -> Path:
    """Write the report of ``references`` in the store at ``store_path`` to ``output``; returns its path."""
    store = ReadOnlyStore(store_path)
    html = render(report_data(store, references, points))
    target = Path(output)
    try:
        target.write_text(html, encoding="utf-8")
    except OSError as error:
        raise CraftCallbacksError(f"cannot write {target}: {error.strerror or error}") from error
    return target


def embed_json(data: Any) -> str:
    """JSON text safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u`` escapes."""
    text = api.to_json(data)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _inline_scripts(html: str, static_dir: Path) -> tuple[str, list[str]]:
    """Scripts with a ``src`` in the package, inline; deferred or async ones moved to the body's end
    (an inline script runs where it stands, so this keeps their order after the document)."""
    deferred: list[str] = []

    def inline(match: re.Match[str]) -> str:
        attributes = _attributes(match.group(1))
        source = attributes.pop("src", None)
        if source is None:
            return match.group(0)
        if _REMOTE.match(source):
            return ""  # never fetched: the report needs no network
        code = _text(_local_file(source, static_dir))
        later = "defer" in attributes or "async" in attributes
        attributes.pop("defer", None)
        attributes.pop("async", None)
        for dropped in ("integrity", "crossorigin", "nonce"):
            attributes.pop(dropped, None)
        tag = f"<script{_render_attributes(attributes)}>{_escape_script(code)}</script>\n"
        if later:
            deferred.append(tag)
            return ""
        return tag

    return _SCRIPT_TAG.sub(inline, html), deferred


def _inline_link(tag: str, static_dir: Path) -> str:
    attributes = _attributes(tag[len("<link") : -1].rstrip("/"))
    href = attributes.get("href")
    if href is None:
        return tag
    if _REMOTE.match(href):
        return ""
    if href.startswith("data:"):
        return tag
    rel = (attributes.get("rel") or "").lower().split()
    if "stylesheet" in rel:
        css = _CLOSE_STYLE.sub(r"<\\/\1", _text(_local_file(href, static_dir)))
        media = attributes.get("media")
        opening = f'<style media="{_attribute_text(media)}">' if media else "<style>"
        return f"{opening}{css}</style>"
    attributes["href"] = _data_uri(_local_file(href, static_dir))
    return f"<link{_render_attributes(attributes)}>"


def _inline_media(tag: str, static_dir: Path) -> str:
    name = tag[1:].split(None, 1)[0].rstrip(">").lower()
    attributes = _attributes(tag[1 + len(name) : -1].rstrip("/"))
    source = attributes.get("src")
    if source is None or source.startswith("data:"):
        return tag
    if _REMOTE.match(source):
        return ""
    attributes["src"] = _data_uri(_local_file(source, static_dir))
    return f"<{name}{_render_attributes(attributes)}>"


def _local_file(reference: str, static_dir: Path) -> Path:
    """The package's file a page refers to (``/static/app.js``, ``static/app.js``, ``app.js``)."""
    path = reference.split("#", 1)[0].split("?", 1)[0]
    for prefix in ("/static/", "static/", "./"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
            break
    found = static_file(static_dir, path)
    if found is None:
        raise CraftCallbacksError(f"the report's page refers to {reference!r}, which the package lacks")
    return found


def _text(file: Path) -> str:
    """A file's text with HTML's line ends (the parser turns CR LF into LF before scripts are hashed)."""
    return file.read_text(encoding="utf-8").replace("\r\n", "\n").replace("\r", "\n")


def _data_uri(file: Path) -> str:
    kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(file.read_bytes()).decode('ascii')}"


def _escape_script(code: str) -> str:
    """Script text that cannot end its element early or enter the parser's "escaped" script state."""
    code = _CLOSE_SCRIPT.sub(r"<\\/\1", code)
    return code.replace("<!--", "<\\!--")


def _attributes(text: str) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for match in _ATTRIBUTE.finditer(text):
        name = match.group(1).lower()
        value = next((group for group in match.groups()[1:] if group is not None), None)
        found.setdefault(name, value)
    return found


def _render_attributes(attributes: dict[str, str | None]) -> str:
    return "".join(
        f" {name}" if value is None else f' {name}="{_attribute_text(value)}"'
        for name, value in attributes.items()
    )


def _attribute_text(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _before_body_end(html: str, text: str) -> str:
    end = html.lower().rfind("</body")
    return html + text if end < 0 else html[:end] + text + html[end:]


def _with_policy(html: str) -> str:
    """Add a Content-Security-Policy: the page's inline scripts by hash, inline styles, no network."""
    hashes = []
    for match in _SCRIPT_TAG.finditer(html):
        kind = (_attributes(match.group(1)).get("type") or "").lower()
        if kind in ("application/json", "application/ld+json", "text/plain"):
            continue
        digest = hashlib.sha256(match.group(2).encode("utf-8")).digest()
        hashes.append(f"'sha256-{base64.b64encode(digest).decode('ascii')}'")
    scripts = " ".join(dict.fromkeys(hashes)) or "'none'"
    policy = (
        f"default-src 'none'; script-src {scripts}; "
        "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; connect-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
    meta = f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
    head = re.search(r"<head\b[^>]*>", html, re.IGNORECASE)
    if head is not None:
        return html[: head.end()] + "\n" + meta + html[head.end() :]
    opening = re.search(r"<html\b[^>]*>", html, re.IGNORECASE)
    at = opening.end() if opening is not None else 0
    return html[:at] + f"<head>{meta}</head>" + html[at:]
