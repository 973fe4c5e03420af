/* craft-callbacks dashboard: the runs page (/), the compare page (/compare?runs=A,B) and the
 * run page (/run/<id>). The compare page is also `craft-callbacks report`: the server inlines this
 * file and the data (<script type="application/json" id="report-data">), and the page then reads
 * that instead of the API and touches no network at all.
 *
 * Plain JS, no build step, no framework; charts are uPlot (vendor/, loaded before this file).
 * SECURITY: every string from the store (run ids, pipeline names, metric names, hyperparameter
 * keys and values) is rendered as text (textContent, createTextNode, setAttribute), never parsed
 * as HTML, and every URL parameter is encoded with encodeURIComponent.
 */
(function () {
  "use strict";

  // Live pages poll every 3 s (a test may set window.craftUiPollMs before the page loads).
  const POLL_MS = Number(window.craftUiPollMs) > 0 ? Number(window.craftUiPollMs) : 3000;
  const CHART_HEIGHT = 240;
  const MAX_POINTS = 1000;
  const PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
  ];
  const STORAGE = "craft-callbacks.ui.";
  const MISSING = "\u0000missing";

  // -- DOM helpers (text only) ---------------------------------------------------------------

  /** An element: props are attributes (setAttribute), `text`, `class`, `on<event>`, or the DOM
   *  properties listed in PROPS; children are nodes or strings (text nodes). */
  const PROPS = new Set(["checked", "disabled", "value", "open", "hidden", "indeterminate"]);
  function h(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else if (PROPS.has(key)) node[key] = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }
  function append(node, children) {
    if (children === undefined || children === null) return node;
    for (const child of Array.isArray(children) ? children : [children]) {
      if (child === undefined || child === null || child === false) continue;
      node.appendChild(typeof child === "string" || typeof child === "number"
        ? document.createTextNode(String(child)) : child);
    }
    return node;
  }
  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }
  const $ = (id) => document.getElementById(id);

  function store(key, value) {
    try {
      if (value === undefined) return JSON.parse(window.localStorage.getItem(STORAGE + key));
      window.localStorage.setItem(STORAGE + key, JSON.stringify(value));
    } catch (e) { /* file:// or private mode: no persistence */ }
    return undefined;
  }

  // -- formatting ---------------------------------------------------------------------------

  function fmtNumber(v) {
    if (typeof v !== "number") return v === null || v === undefined ? "—" : String(v);
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return Math.abs(v) >= 1e15 ? v.toExponential(4) : String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e7)) return v.toExponential(3);
    return String(Number(v.toPrecision(5)));
  }
  function fmtStep(v) {
    return typeof v === "number" ? v.toLocaleString("en-US", { maximumFractionDigits: 3 }) : "—";
  }
  function fmtCount(n) { return Number(n || 0).toLocaleString("en-US"); }
  /** A hyperparameter as the user wrote it in Python. */
  function fmtValue(v) {
    if (v === null || v === undefined) return "None";
    if (v === true) return "True";
    if (v === false) return "False";
    if (typeof v === "string") return v;
    if (typeof v === "number") return String(v);
    return JSON.stringify(v);
  }
  function fmtDuration(s) {
    if (typeof s !== "number" || !Number.isFinite(s) || s < 0) return "—";
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + String(Math.floor(s % 60)).padStart(2, "0") + " s";
    const hours = Math.floor(m / 60);
    if (hours < 48) return hours + " h " + String(m % 60).padStart(2, "0") + " min";
    return Math.floor(hours / 24) + " d " + (hours % 24) + " h";
  }
  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const p = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " "
      + p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }
  function clock() {
    const d = new Date();
    const p = (n) => String(n).padStart(2, "0");
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }
  function durationOf(run) {
    if (typeof run.duration_s === "number") return run.duration_s;
    const start = Date.parse(run.created_at);
    if (Number.isNaN(start)) return null;
    const end = run.ended_at ? Date.parse(run.ended_at) : (run.status === "running" ? Date.now() : NaN);
    return Number.isNaN(end) ? null : Math.max(0, (end - start) / 1000);
  }

  /** The id's random part (after the last "-"), 8 characters at most: "20261124-201530-a1b2c3" -> "a1b2c3". */
  function shortId(id) {
    const s = String(id);
    const cut = s.lastIndexOf("-");
    return (cut >= 0 && cut < s.length - 1 ? s.slice(cut + 1) : s).slice(0, 8);
  }
  function runLabel(run) { return (run.pipeline || "run") + " · " + shortId(run.id); }
  function colorFor(i, alpha) {
    if (i < PALETTE.length) {
      if (alpha === undefined) return PALETTE[i];
      return PALETTE[i] + Math.round(alpha * 255).toString(16).padStart(2, "0");
    }
    const hue = Math.round((i * 137.508) % 360);
    return alpha === undefined ? "hsl(" + hue + " 60% 42%)" : "hsl(" + hue + " 60% 42% / " + alpha + ")";
  }
  function swatch(i, line) {
    const s = h("span", { class: line ? "swatch line" : "swatch", "aria-hidden": "true" });
    s.style.background = colorFor(i);
    return s;
  }
  function statusBadge(status) {
    const s = String(status || "unknown");
    return h("span", { class: "status status-" + s.replace(/[^a-z0-9_-]/gi, ""), text: s });
  }
  function runHref(id) { return "/run/" + encodeURIComponent(id); }
  function compareHref(ids) { return "/compare?runs=" + ids.map(encodeURIComponent).join(","); }

  /** Nested hyperparameters flattened to dotted keys: {"optim": {"lr": 1}} -> {"optim.lr": 1}. */
  function flatten(obj, prefix, out) {
    out = out || {};
    for (const [key, value] of Object.entries(obj || {})) {
      const name = prefix ? prefix + "." + key : key;
      if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
        flatten(value, name, out);
      } else {
        out[name] = value;
      }
    }
    return out;
  }
  function sameJSON(values) {
    const first = JSON.stringify(values[0] === undefined ? MISSING : values[0]);
    return values.every((v) => JSON.stringify(v === undefined ? MISSING : v) === first);
  }
  /** The keys whose values are not the same in every object (a missing key differs). */
  function differingKeys(objects) {
    const keys = new Set();
    for (const o of objects) for (const k of Object.keys(o)) keys.add(k);
    return Array.from(keys).sort().filter((k) => !sameJSON(objects.map((o) => o[k])));
  }

  // -- the API ------------------------------------------------------------------------------

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    let body = null;
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    if (!response.ok) {
      const error = new Error((body && body.error) || response.status + " " + response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }
  function seriesURL(metric, ids, points, extra) {
    const query = [
      "runs=" + ids.map(encodeURIComponent).join(","),
      "metric=" + encodeURIComponent(metric),
      "points=" + encodeURIComponent(points),
    ];
    for (const [key, value] of Object.entries(extra || {})) {
      if (value !== undefined && value !== null) query.push(key + "=" + encodeURIComponent(value));
    }
    return "/api/series?" + query.join("&");
  }
  async function pool(tasks, width) {
    let next = 0;
    const worker = async () => {
      while (next < tasks.length) {
        const task = tasks[next++];
        try { await task(); } catch (e) { console.error(e); }
      }
    };
    await Promise.all(Array.from({ length: Math.min(width, tasks.length) }, worker));
  }

  function setLive(text, state) {
    const node = $("live-status");
    if (!node) return;
    node.textContent = text;
    node.classList.toggle("on", state === "on");
    node.classList.toggle("error", state === "error");
  }

  // ==========================================================================================
  // The runs page
  // ==========================================================================================

  const FIELDS = [
    { key: "id", label: "Run", get: (r) => r.id, cls: "id" },
    { key: "pipeline", label: "Pipeline", get: (r) => r.pipeline },
    { key: "status", label: "Status", get: (r) => r.status },
    { key: "created", label: "Created", get: (r) => r.created_at },
    { key: "duration", label: "Duration", get: (r) => durationOf(r), num: true },
  ];
  const OPTIONAL_FIELDS = [
    { key: "deployment", label: "Deployment", get: (r) => r.deployment },
    { key: "ended", label: "Ended", get: (r) => r.ended_at },
  ];
  const FIELD_ALIASES = {
    id: (r) => r.id, run: (r) => r.id, pipeline: (r) => r.pipeline, status: (r) => r.status,
    deployment: (r) => r.deployment, created: (r) => r.created_at, created_at: (r) => r.created_at,
    ended: (r) => r.ended_at, ended_at: (r) => r.ended_at, duration: (r) => durationOf(r),
    duration_s: (r) => durationOf(r),
  };

  /** "lr=0.001 accuracy>0.9 bert" -> [{key, op, value}, {key, op, value}, {text}]. */
  function parseFilter(text) {
    const tokens = String(text).match(/(?:[^\s"]+|"[^"]*")+/g) || [];
    const unquote = (s) => s.replace(/"/g, "");
    return tokens.map((token) => {
      const m = token.match(/^([^=<>!~"]+?)(!=|>=|<=|==|=|>|<|~)(.*)$/);
      if (!m) return { text: unquote(token).toLowerCase() };
      return { key: unquote(m[1]), op: m[2] === "==" ? "=" : m[2], value: unquote(m[3]) };
    });
  }
  function asNumber(v) {
    if (typeof v === "number") return v;
    if (typeof v === "string" && v.trim() !== "" && !Number.isNaN(Number(v))) return Number(v);
    return NaN;
  }
  /** The values a filter's name stands for in a run: its scalar and its hyperparameter of that
   *  name (HF's learning_rate is both), or a field (id, pipeline, status, ...). "hp:NAME" and
   *  "scalar:NAME" choose one; names match case-insensitively when nothing matches exactly. */
  function lookup(run, key) {
    const scalars = run.scalars || {};
    const hps = run._flat || (run._flat = flatten(run.hyperparameters));
    let sources = [scalars, hps];
    let name = key;
    const prefix = key.match(/^(hp|hparam|hyperparameter|scalar):(.+)$/i);
    if (prefix) {
      sources = /^scalar$/i.test(prefix[1]) ? [scalars] : [hps];
      name = prefix[2];
    }
    const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
    let found = sources.filter((o) => has(o, name)).map((o) => o[name]);
    if (!found.length && !prefix && FIELD_ALIASES[name.toLowerCase()]) return [FIELD_ALIASES[name.toLowerCase()](run)];
    if (!found.length) {
      const lower = name.toLowerCase();
      found = sources.flatMap((o) => Object.keys(o).filter((k) => k.toLowerCase() === lower).map((k) => o[k]));
    }
    return found;
  }
  function matchesValue(v, term) {
    const a = asNumber(v);
    const b = asNumber(term.value);
    const text = fmtValue(v).toLowerCase();
    const want = term.value.toLowerCase();
    if (term.op === "=" || term.op === "!=") {
      return Number.isFinite(a) && Number.isFinite(b)
        ? Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(a), Math.abs(b))
        : text === want || (v === null && (want === "null" || want === "none")) || String(v).toLowerCase() === want;
    }
    if (term.op === "~") return text.includes(want);
    if (Number.isFinite(a) && Number.isFinite(b)) {
      return term.op === ">" ? a > b : term.op === ">=" ? a >= b : term.op === "<" ? a < b : a <= b;
    }
    if (typeof v === "string") {  // dates, ids: compare as text
      const c = String(v).localeCompare(term.value);
      return term.op === ">" ? c > 0 : term.op === ">=" ? c >= 0 : term.op === "<" ? c < 0 : c <= 0;
    }
    return false;
  }
  /** A filter term against a run: words search id, pipeline, deployment and status; NAME op VALUE
   *  holds when one of the values NAME stands for satisfies it ("!=" when none equals VALUE). */
  function matches(run, term) {
    if (term.text !== undefined) {
      return [run.id, run.pipeline, run.deployment, run.status]
        .some((field) => field && String(field).toLowerCase().includes(term.text));
    }
    const values = lookup(run, term.key);
    if (term.op === "!=") return !values.some((v) => matchesValue(v, term));
    return values.some((v) => matchesValue(v, term));
  }

  function compareValues(a, b) {
    const missingA = a === undefined || a === null;
    const missingB = b === undefined || b === null;
    if (missingA || missingB) return missingA === missingB ? 0 : missingA ? 1 : -1;
    if (typeof a === "number" && typeof b === "number") return a - b;
    if (typeof a === "boolean" && typeof b === "boolean") return Number(a) - Number(b);
    return fmtValue(a).localeCompare(fmtValue(b), undefined, { numeric: true });
  }

  function runsPage() {
    const saved = store("columns") || {};
    const query = new URLSearchParams(location.search);
    const state = {
      runs: [],
      storePath: "",
      loadedText: null,
      known: null,
      fresh: new Set(),
      selected: new Set(),
      sort: { key: query.get("sort") || "created", dir: query.get("dir") === "asc" ? "asc" : "desc" },
      filter: query.get("q") || "",
      chosen: saved.chosen || null,  // ["scalar:loss", "hp:lr", "field:deployment"], null = defaults
    };
    const filterInput = $("filter");
    filterInput.value = state.filter;

    function scalarNamesByUse() {
      const counts = new Map();
      for (const run of state.runs) {
        for (const name of Object.keys(run.scalars || {})) counts.set(name, (counts.get(name) || 0) + 1);
      }
      return Array.from(counts.entries()).sort((x, y) => y[1] - x[1] || x[0].localeCompare(y[0])).map((e) => e[0]);
    }
    function hyperparameterNames() {
      const names = new Set();
      for (const run of state.runs) for (const name of Object.keys(lookupFlat(run))) names.add(name);
      return Array.from(names).sort();
    }
    function lookupFlat(run) { return run._flat || (run._flat = flatten(run.hyperparameters)); }
    function chosenKeys() {
      if (state.chosen) return state.chosen;
      return scalarNamesByUse().slice(0, 6).map((n) => "scalar:" + n);
    }
    function columns() {
      const cols = FIELDS.map((f) => ({ ...f, id: "field:" + f.key, kind: "" }));
      // Fields, then the hyperparameters chosen (the few a person asked for), then the scalars.
      const rank = (key) => (key.startsWith("field:") ? 0 : key.startsWith("hp:") ? 1 : 2);
      const keys = chosenKeys().slice().sort((a, b) => rank(a) - rank(b));
      for (const key of keys) {
        const cut = key.indexOf(":");
        const kind = key.slice(0, cut);
        const name = key.slice(cut + 1);
        if (kind === "scalar") {
          cols.push({ id: key, key, label: name, kind: "scalar", num: true, get: (r) => (r.scalars || {})[name] });
        } else if (kind === "hp") {
          cols.push({ id: key, key, label: name, kind: "hyperparameter", get: (r) => lookupFlat(r)[name] });
        } else if (kind === "field") {
          const f = OPTIONAL_FIELDS.find((x) => x.key === name);
          if (f) cols.push({ ...f, id: key, kind: "" });
        }
      }
      return cols;
    }
    function sortKeyOf(col) { return col.id.startsWith("field:") ? col.id.slice(6) : col.id; }

    function renderHead(cols) {
      const thead = $("runs").tHead;
      clear(thead);
      const allBox = h("input", { type: "checkbox", id: "select-all", "aria-label": "Select all shown runs" });
      allBox.addEventListener("change", () => {
        for (const run of visibleRuns()) {
          if (allBox.checked) state.selected.add(run.id); else state.selected.delete(run.id);
        }
        renderBody(cols);
      });
      const row = h("tr", {}, h("th", { class: "select-col", scope: "col" }, allBox));
      for (const col of cols) {
        const key = sortKeyOf(col);
        const sorted = state.sort.key === key;
        const what = col.kind === "scalar" ? "the scalar " : col.kind ? "the hyperparameter " : "";
        const button = h("button", { type: "button", class: "sort", "data-sort": key, title: "Sort by " + what + col.label },
          [col.label, col.kind === "hyperparameter" ? h("span", { class: "kind", text: "hp" }) : null,
            h("span", { class: "arrow", "aria-hidden": "true" })]);
        button.addEventListener("click", () => {
          if (state.sort.key === key) state.sort.dir = state.sort.dir === "asc" ? "desc" : "asc";
          else state.sort = { key, dir: col.num || key === "created" ? "desc" : "asc" };
          saveURL();
          render();
        });
        row.appendChild(h("th", {
          scope: "col", class: col.num ? "num" : "", "data-col": key,
          "aria-sort": sorted ? (state.sort.dir === "asc" ? "ascending" : "descending") : "none",
        }, button));
      }
      thead.appendChild(row);
    }

    function visibleRuns() {
      const terms = parseFilter(state.filter);
      const cols = columns();
      const col = cols.find((c) => sortKeyOf(c) === state.sort.key) || cols[3];
      const dir = state.sort.dir === "asc" ? 1 : -1;
      const shown = state.runs.filter((run) => terms.every((term) => matches(run, term)));
      shown.sort((x, y) => {
        const a = col.get(x);
        const b = col.get(y);
        const missing = (a === undefined || a === null) - (b === undefined || b === null);
        if (missing) return missing;  // missing values last in both directions
        return dir * compareValues(a, b) || compareValues(y.created_at, x.created_at);
      });
      return shown;
    }

    function cell(col, run) {
      const value = col.get(run);
      if (col.id === "field:id") {
        return h("td", { class: "id" }, h("a", { href: runHref(run.id), title: "Open run " + run.id, text: run.id }));
      }
      if (col.id === "field:status") return h("td", {}, statusBadge(run.status));
      if (col.id === "field:created" || col.id === "field:ended") {
        return h("td", { class: "created", title: value || "", text: fmtTime(value) });
      }
      if (col.id === "field:duration") return h("td", { class: "num", text: fmtDuration(value) });
      if (value === undefined) return h("td", { class: (col.num ? "num " : "") + "cell-missing", text: "—" });
      if (col.kind === "scalar") {
        return h("td", { class: "num", title: String(value), text: fmtNumber(value) });
      }
      const numeric = col.num || typeof value === "number";
      return h("td", { class: numeric ? "num" : "clip", title: fmtValue(value), text: fmtValue(value) });
    }

    function renderBody(cols) {
      const tbody = $("runs").tBodies[0];
      clear(tbody);
      const shown = visibleRuns();
      for (const run of shown) {
        const selected = state.selected.has(run.id);
        const box = h("input", {
          type: "checkbox", class: "select", "data-run-id": run.id, checked: selected,
          "aria-label": "Select run " + run.id,
        });
        box.addEventListener("change", () => {
          if (box.checked) state.selected.add(run.id); else state.selected.delete(run.id);
          tr.classList.toggle("selected", box.checked);
          updateSelection(shown);
        });
        const tr = h("tr", { "data-run-id": run.id, class: selected ? "selected" : "" },
          [h("td", { class: "select-col" }, box)].concat(cols.map((col) => cell(col, run))));
        if (state.fresh.has(run.id)) tr.classList.add("fresh");
        tbody.appendChild(tr);
      }
      if (!shown.length) {
        const message = state.runs.length
          ? "No run matches “" + state.filter + "”."
          : "No runs in this store yet. Record one with MetricRecorder, or any of the callbacks.";
        tbody.appendChild(h("tr", {}, h("td", { class: "empty", colspan: String(cols.length + 1), text: message })));
      }
      $("run-count").textContent = shown.length === state.runs.length
        ? fmtCount(state.runs.length) + (state.runs.length === 1 ? " run" : " runs")
        : fmtCount(shown.length) + " of " + fmtCount(state.runs.length) + " runs";
      updateSelection(shown);
      renderFilterNote();
    }

    function updateSelection(shown) {
      for (const id of Array.from(state.selected)) {
        if (!state.runs.some((r) => r.id === id)) state.selected.delete(id);
      }
      const ids = state.runs.filter((r) => state.selected.has(r.id)).map((r) => r.id);
      const link = $("compare");
      link.textContent = ids.length ? "Compare " + ids.length + (ids.length === 1 ? " run" : " runs") : "Compare";
      if (ids.length) {
        link.setAttribute("href", compareHref(ids));
        link.setAttribute("aria-disabled", "false");
      } else {
        link.removeAttribute("href");
        link.setAttribute("aria-disabled", "true");
      }
      const all = $("select-all");
      if (all) {
        const n = shown.filter((r) => state.selected.has(r.id)).length;
        all.checked = shown.length > 0 && n === shown.length;
        all.indeterminate = n > 0 && n < shown.length;
      }
    }

    function renderFilterNote() {
      const note = $("filter-note");
      const unknown = parseFilter(state.filter)
        .filter((t) => t.key !== undefined && !state.runs.some((r) => lookup(r, t.key).length))
        .map((t) => t.key);
      if (unknown.length && state.runs.length) {
        note.textContent = "No run has " + unknown.map((k) => "“" + k + "”").join(", ")
          + " (not a scalar, a hyperparameter, nor id, pipeline, deployment, status, created, duration;"
          + " hp:NAME or scalar:NAME picks one where both exist).";
        note.hidden = false;
      } else {
        note.hidden = true;
      }
    }

    let chooserSignature = null;
    function renderChooser() {
      chooserSignature = JSON.stringify([scalarNamesByUse().sort(), hyperparameterNames()]);
      const box = $("column-options");
      const search = $("column-search").value.trim().toLowerCase();
      const chosen = new Set(chosenKeys());
      clear(box);
      const groups = [
        ["Fields", OPTIONAL_FIELDS.map((f) => ["field:" + f.key, f.label])],
        ["Scalars", scalarNamesByUse().sort().map((n) => ["scalar:" + n, n])],
        ["Hyperparameters", hyperparameterNames().map((n) => ["hp:" + n, n])],
      ];
      for (const [title, items] of groups) {
        const shown = items.filter(([, label]) => !search || label.toLowerCase().includes(search));
        if (!shown.length) continue;
        box.appendChild(h("h3", { text: title + " (" + items.length + ")" }));
        for (const [key, label] of shown) {
          const input = h("input", { type: "checkbox", "data-column": key, checked: chosen.has(key) });
          input.addEventListener("change", () => {
            const next = chosenKeys().filter((k) => k !== key);
            if (input.checked) next.push(key);
            state.chosen = next;
            store("columns", { chosen: next });
            render();
          });
          box.appendChild(h("label", {}, [input, label]));
        }
      }
    }

    let headSignature = null;
    function render() {
      const cols = columns();
      const signature = JSON.stringify([cols.map((c) => c.id), state.sort]);
      if (signature !== headSignature) {
        headSignature = signature;
        renderHead(cols);
      }
      renderBody(cols);
      // The open chooser is redrawn only when there are other columns to offer (it keeps its scroll).
      const offered = JSON.stringify([scalarNamesByUse().sort(), hyperparameterNames()]);
      if ($("column-chooser").open && offered !== chooserSignature) renderChooser();
    }

    function saveURL() {
      const params = new URLSearchParams();
      if (state.filter) params.set("q", state.filter);
      if (state.sort.key !== "created" || state.sort.dir !== "desc") {
        params.set("sort", state.sort.key);
        params.set("dir", state.sort.dir);
      }
      const search = params.toString();
      history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
    }

    filterInput.addEventListener("input", () => {
      state.filter = filterInput.value;
      saveURL();
      render();
    });
    $("column-chooser").addEventListener("toggle", () => { if ($("column-chooser").open) renderChooser(); });
    $("column-search").addEventListener("input", renderChooser);
    document.addEventListener("click", (event) => {
      const chooser = $("column-chooser");
      if (chooser.open && !chooser.contains(event.target)) chooser.open = false;
    });

    async function refresh() {
      try {
        const data = await getJSON("/api/runs");
        const text = JSON.stringify(data.runs);
        if (data.store && data.store !== state.storePath) {
          state.storePath = data.store;
          $("store").textContent = data.store;
        }
        const running = (data.runs || []).filter((r) => r.status === "running").length;
        if (text !== state.loadedText) {
          state.loadedText = text;
          state.fresh = new Set();
          if (state.known) {
            for (const run of data.runs) if (!state.known.has(run.id)) state.fresh.add(run.id);
          }
          state.known = new Set(data.runs.map((r) => r.id));
          state.runs = data.runs;
          render();
        } else if (running) {
          renderBody(columns());  // durations of running runs
        }
        state.fresh.clear();
        setLive("live · " + (running ? running + " running · " : "") + "updated " + clock(), "on");
        document.body.dataset.state = "ready";
      } catch (error) {
        setLive("cannot reach the dashboard server (" + error.message + "), retrying", "error");
      }
      setTimeout(refresh, POLL_MS);
    }
    render();
    refresh();
  }

  // ==========================================================================================
  // Charts (the compare page, the report, the run page)
  // ==========================================================================================

  /** TensorBoard's smoothing: an exponential moving average, debiased (0 = raw). */
  function smooth(values, weight) {
    if (!(weight > 0)) return values.slice();
    const out = new Array(values.length);
    let last = 0;
    let count = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v === null || v === undefined || !Number.isFinite(v)) { out[i] = v; continue; }
      last = last * weight + (1 - weight) * v;
      count += 1;
      out[i] = last / (1 - Math.pow(weight, count));
    }
    return out;
  }

  /** One run's points of a series answer, steps filled in where missing. */
  function points(answer) {
    const steps = (answer.steps || []).map((s, i) => (s === null || s === undefined ? i : s));
    const last = answer.last_step !== undefined && answer.last_step !== null
      ? answer.last_step : (steps.length ? steps[steps.length - 1] : null);
    return {
      steps, values: (answer.values || []).slice(), total: answer.total ?? steps.length,
      downsampled: Boolean(answer.downsampled), lastStep: last,
    };
  }

  /** The y axis' tick labels: as many decimals as the tick spacing needs (uPlot's default shows
   *  0.0002 as 0), exponents for tiny or huge values. */
  function yTicks(u, splits) {
    if (u.scales.y.distr === 3) return splits.map((v) => (v === null ? "" : fmtNumber(v)));
    let spacing = Infinity;
    let magnitude = 0;
    for (let i = 0; i < splits.length; i++) {
      magnitude = Math.max(magnitude, Math.abs(splits[i]));
      if (i) spacing = Math.min(spacing, Math.abs(splits[i] - splits[i - 1]) || Infinity);
    }
    if (!Number.isFinite(spacing)) return splits.map((v) => fmtNumber(v));
    if (magnitude >= 1e6 || (magnitude > 0 && magnitude < 1e-3)) {
      const digits = Math.min(6, Math.max(0, Math.floor(Math.log10(magnitude)) - Math.floor(Math.log10(spacing))));
      return splits.map((v) => (v === 0 ? "0" : v.toExponential(digits)));
    }
    let decimals = 0;
    while (decimals < 10 && Math.abs(Math.round(spacing * 10 ** decimals) - spacing * 10 ** decimals) > 1e-6) decimals++;
    return splits.map((v) => v.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals }));
  }

  /** uPlot's points.show: dots where a run's values in view are few (one value draws no line). */
  function sparse(u, seriesIdx) {
    const ys = u.data[seriesIdx];
    const [i0, i1] = u.series[0].idxs || [0, ys.length - 1];
    const room = u.bbox.width / devicePixelRatio / 24;
    let n = 0;
    for (let j = Math.max(0, i0 || 0); j <= i1 && j < ys.length; j++) {
      if (ys[j] !== null && ys[j] !== undefined && ++n > room) return false;
    }
    return true;
  }

  function axisSize(u, values, axisIdx, cycleNum) {
    const axis = u.axes[axisIdx];
    if (cycleNum > 1) return axis._size;
    let size = axis.ticks.size + axis.gap;
    const longest = (values || []).reduce((acc, v) => (String(v).length > acc.length ? String(v) : acc), "");
    if (longest) {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / devicePixelRatio;
    }
    return Math.ceil(size) + 2;
  }

  class MetricChart {
    constructor(set, metric) {
      this.set = set;
      this.metric = metric;
      this.overview = new Map();  // run id -> points()
      this.detail = null;  // {start, end, data: Map run id -> points()} at full resolution when zoomed
      this.u = null;
      this.zoomed = false;
      this.hidden = new Set();
      this.note = h("span", { class: "chart-note" });
      this.plot = h("div", { class: "plot" }, h("div", { class: "loading", text: "loading…" }));
      this.stepLine = h("div", { class: "readout-step" });
      this.rows = h("div", { class: "readout-rows" });
      this.el = h("section", { class: "chart card", "data-metric": metric, "data-state": "loading" }, [
        h("header", {}, [h("h3", { text: metric, title: metric }), this.note]),
        this.plot,
        h("div", { class: "readout", "aria-live": "off" }, [this.stepLine, this.rows]),
      ]);
    }

    runs() { return this.set.runs; }
    runsWithMetric() { return this.set.runs.filter((r) => r.lists && Object.prototype.hasOwnProperty.call(r.lists, this.metric)); }
    pointsWanted() {
      const width = this.plot.clientWidth || 600;
      return Math.max(200, Math.min(MAX_POINTS, Math.round(width)));
    }

    async load() {
      const runs = this.runsWithMetric();
      if (this.set.report) {
        const answer = this.set.reportSeries[this.metric];
        for (const s of (answer && answer.series) || []) this.overview.set(s.run, points(s));
      } else if (runs.length) {
        const answer = await getJSON(seriesURL(this.metric, runs.map((r) => r.id), this.pointsWanted()));
        for (const s of answer.series || []) this.overview.set(s.run, points(s));
      }
      this.draw();
    }

    /** New points of running runs (step > the last one we have). */
    async grow(runIds) {
      let changed = false;
      for (const id of runIds) {
        const have = this.overview.get(id);
        const after = have ? have.lastStep : null;
        const answer = await getJSON(seriesURL(this.metric, [id], this.pointsWanted(),
          after === null ? {} : { after }));
        const s = (answer.series || [])[0];
        if (!s) continue;
        const fresh = points(s);
        if (!have) {
          this.overview.set(id, fresh);
          changed = changed || fresh.steps.length > 0;
          continue;
        }
        for (let i = 0; i < fresh.steps.length; i++) {
          if (have.lastStep === null || fresh.steps[i] > have.lastStep) {
            have.steps.push(fresh.steps[i]);
            have.values.push(fresh.values[i]);
            have.lastStep = fresh.steps[i];
            changed = true;
          }
        }
        if (typeof s.total === "number") have.total = s.total;  // the whole list's count
        if (s.last_step !== undefined && s.last_step !== null) have.lastStep = Math.max(have.lastStep ?? s.last_step, s.last_step);
        have.downsampled = have.downsampled || fresh.downsampled;
        // Full-resolution tails pile up on a long live run: fetch the whole, downsampled, again.
        if (have.downsampled && have.steps.length > 4 * this.pointsWanted()) {
          const again = await getJSON(seriesURL(this.metric, [id], this.pointsWanted()));
          const whole = (again.series || [])[0];
          if (whole) this.overview.set(id, points(whole));
        }
      }
      if (changed) {
        if (!this.u) this.draw();
        else if (!this.zoomed) this.redraw(true);
        else this.updateMeta();
      }
      return changed;
    }

    /** uPlot's aligned table: [steps, raw run 1..k (faint, under), shown run 1..k]. */
    buildData() {
      const source = this.detail ? this.detail.data : this.overview;
      const runs = this.runs();
      const log = this.set.log;
      const weight = this.set.smoothing;
      const stepSet = new Set();
      for (const run of runs) {
        const s = source.get(run.id);
        if (s) for (const step of s.steps) stepSet.add(step);
      }
      const xs = Array.from(stepSet).sort((a, b) => a - b);
      const where = new Map(xs.map((x, i) => [x, i]));
      const raw = [];
      const shown = [];
      for (const run of runs) {
        const r = new Array(xs.length).fill(null);
        const m = new Array(xs.length).fill(null);
        const s = source.get(run.id);
        if (s) {
          const values = log ? s.values.map((v) => (v > 0 ? v : null)) : s.values;
          const smoothed = smooth(values, weight);
          for (let j = 0; j < s.steps.length; j++) {
            const i = where.get(s.steps[j]);
            r[i] = values[j];
            m[i] = smoothed[j];
          }
        }
        raw.push(r);
        shown.push(m);
      }
      return [xs].concat(raw, shown);
    }

    options(width) {
      const runs = this.runs();
      const k = runs.length;
      const smoothing = this.set.smoothing > 0;
      const series = [{ label: "step" }];
      runs.forEach((run, i) => series.push({
        label: runLabel(run) + " (raw)", stroke: colorFor(i, 0.2), width: 1, spanGaps: true,
        show: smoothing && !this.hidden.has(run.id), points: { show: false },
      }));
      runs.forEach((run, i) => series.push({
        label: runLabel(run), stroke: colorFor(i), width: 1.75, spanGaps: true,
        show: !this.hidden.has(run.id), points: { show: sparse, size: 5, fill: colorFor(i) },
      }));
      return {
        width, height: CHART_HEIGHT,
        legend: { show: false },
        cursor: {
          sync: { key: this.set.syncKey },
          drag: { x: true, y: false, setScale: true },
          hover: { skip: [null, undefined], prox: null, bias: 0 },
          points: { size: 7 },
          // uPlot zooms every chart of the page together (cursor sync); a double-click resets them all.
          bind: { dblclick: () => () => { this.set.resetZoom(); return null; } },
        },
        scales: { x: { time: false }, y: this.set.log ? { distr: 3, log: 10 } : {} },
        axes: [
          { label: "step", labelSize: 18, size: 36, grid: { stroke: "#eef0f3" }, ticks: { stroke: "#d8dce3" } },
          { size: axisSize, values: yTicks, grid: { stroke: "#eef0f3" }, ticks: { stroke: "#d8dce3" } },
        ],
        series,
        hooks: {
          setCursor: [() => this.updateReadout()],
          setScale: [(u, key) => { if (key === "x") this.onScale(); }],
        },
      };
    }

    draw() {
      const data = this.buildData();
      const keepX = this.u && this.zoomed ? { min: this.u.scales.x.min, max: this.u.scales.x.max } : null;
      if (this.u) { this.u.destroy(); this.u = null; }
      clear(this.plot);
      if (!data[0].length) {
        this.plot.appendChild(h("div", { class: "loading", text: "no values yet" }));
        this.el.dataset.state = "empty";
        this.buildReadout();
        this.updateMeta();
        return;
      }
      const width = Math.max(240, this.plot.clientWidth || 560);
      this.u = new uPlot(this.options(width), data, this.plot);
      if (keepX) this.u.setScale("x", keepX);
      this.el.dataset.state = "drawn";
      this.buildReadout();
      this.updateMeta();
      this.updateReadout();
      if (!this.resizer && window.ResizeObserver) {
        this.resizer = new ResizeObserver(() => {
          const w = Math.max(240, this.plot.clientWidth);
          if (this.u && Math.abs(w - this.u.width) > 1) this.u.setSize({ width: w, height: CHART_HEIGHT });
        });
        this.resizer.observe(this.plot);
      }
    }

    /** New data in the same chart; keeps the zoom unless resetScales. */
    redraw(resetScales) {
      if (!this.u) { this.draw(); return; }
      const data = this.buildData();
      if (resetScales) {
        this.u.setData(data, true);
      } else {
        const { min, max } = this.u.scales.x;
        this.u.setData(data, false);
        this.u.setScale("x", { min, max });  // y follows the new values
      }
      if (this.readoutRuns().map((r) => r.id).join(",") !== this.readoutKey) this.buildReadout();
      this.updateMeta();
      this.updateReadout();
    }

    /** After the smoothing changes: the same scales, the new line. */
    restyle() {
      if (!this.u) return;
      const smoothing = this.set.smoothing > 0;
      this.runs().forEach((run, i) => {
        const show = smoothing && !this.hidden.has(run.id);
        if (this.u.series[1 + i].show !== show) this.u.setSeries(1 + i, { show });
      });
      this.redraw(false);
    }

    extent() {
      let lo = Infinity;
      let hi = -Infinity;
      for (const s of this.overview.values()) {
        if (!s.steps.length) continue;
        lo = Math.min(lo, s.steps[0]);
        hi = Math.max(hi, s.steps[s.steps.length - 1]);
      }
      return lo <= hi ? { min: lo, max: hi } : null;
    }

    onScale() {
      if (!this.u) return;
      const { min, max } = this.u.scales.x;
      const whole = this.extent();
      if (min === null || max === null || min === undefined || !whole) return;
      const zoomed = min > whole.min + 1e-9 || max < whole.max - 1e-9;
      if (zoomed !== this.zoomed) {
        this.zoomed = zoomed;
        this.el.classList.toggle("zoomed", zoomed);
        this.set.zoomChanged();
      }
      if (!zoomed) {
        if (this.detail) { this.detail = null; this.redraw(true); }
        return;
      }
      if (this.set.report) return;  // the report zooms into the points it holds
      if (this.detail && this.detail.start <= min && this.detail.end >= max) return;
      if (!Array.from(this.overview.values()).some((s) => s.downsampled)) return;
      clearTimeout(this.zoomTimer);
      this.zoomTimer = setTimeout(() => this.fetchDetail(min, max), 120);
    }

    async fetchDetail(min, max) {
      const span = Math.max(1, max - min);
      const start = Math.floor(min - span * 0.25);
      const end = Math.ceil(max + span * 0.25);
      const ids = this.runsWithMetric().map((r) => r.id);
      if (!ids.length) return;
      this.note.textContent = "loading full resolution…";
      try {
        const answer = await getJSON(seriesURL(this.metric, ids, this.pointsWanted(), { start, end }));
        if (!this.zoomed) return;
        const data = new Map();
        for (const s of answer.series || []) data.set(s.run, points(s));
        this.detail = { start, end, data };
        this.redraw(false);
      } catch (error) {
        this.note.textContent = "zoom: " + error.message;
      }
    }

    resetZoom() {
      if (!this.u) return;
      this.detail = null;
      this.zoomed = false;
      this.el.classList.remove("zoomed");
      this.redraw(true);
      this.set.zoomChanged();
    }

    updateMeta() {
      const source = this.detail ? this.detail.data : this.overview;
      let drawn = 0;
      let total = 0;
      let down = false;
      for (const [id, s] of source) {
        if (!this.set.runs.some((r) => r.id === id)) continue;
        drawn += s.steps.length;
        total += s.total || s.steps.length;
        down = down || s.downsampled;
      }
      let all = 0;
      for (const s of this.overview.values()) all += s.steps.length;
      this.el.dataset.points = String(all);
      const runs = this.runsWithMetric().length;
      let text = runs + (runs === 1 ? " run" : " runs") + " · " + fmtCount(drawn) + (drawn === 1 ? " point" : " points");
      if (this.detail) text += down ? " in range, downsampled" : " in range, full resolution";
      else if (down) text += " of " + fmtCount(total) + " (downsampled; zoom for detail)";
      this.note.textContent = text;
    }

    readoutRuns() {
      return this.runs().filter((run) => this.overview.has(run.id)
        || (run.lists && Object.prototype.hasOwnProperty.call(run.lists, this.metric)));
    }

    buildReadout() {
      clear(this.rows);
      this.readoutRows = [];
      this.readoutKey = this.readoutRuns().map((r) => r.id).join(",");
      this.runs().forEach((run, i) => {
        if (!this.readoutRuns().includes(run)) return;
        const value = h("span", { class: "value" });
        const at = h("span", { class: "at" });
        const row = h("div", {
          class: "readout-row" + (this.hidden.has(run.id) ? " off" : ""), "data-run": run.id,
          role: "button", tabindex: "0", title: "Show or hide " + run.id,
        }, [swatch(i, true), h("span", { class: "label", text: this.set.legendLabel(run) }), at, value]);
        const toggle = () => this.toggleRun(run.id);
        row.addEventListener("click", toggle);
        row.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } });
        this.rows.appendChild(row);
        this.readoutRows.push({ run, i, value, at, row });
      });
    }

    toggleRun(id) {
      if (this.hidden.has(id)) this.hidden.delete(id); else this.hidden.add(id);
      const i = this.runs().findIndex((r) => r.id === id);
      const k = this.runs().length;
      if (this.u && i >= 0) {
        const show = !this.hidden.has(id);
        this.u.setSeries(1 + k + i, { show });
        this.u.setSeries(1 + i, { show: show && this.set.smoothing > 0 });
      }
      for (const r of this.readoutRows || []) r.row.classList.toggle("off", this.hidden.has(r.run.id));
    }

    updateReadout() {
      const u = this.u;
      const k = this.runs().length;
      const idx = u && u.cursor ? u.cursor.idx : null;
      const hovering = idx !== null && idx !== undefined;
      const xs = u ? u.data[0] : [];
      this.stepLine.textContent = hovering ? "step " + fmtStep(xs[idx]) : "last values (hover a chart for a step)";
      const smoothing = this.set.smoothing > 0;
      for (const r of this.readoutRows || []) {
        let j = null;
        if (u) {
          if (hovering) {
            j = u.cursor.idxs ? u.cursor.idxs[1 + k + r.i] : idx;
          } else {
            const ys = u.data[1 + k + r.i];
            for (let t = ys.length - 1; t >= 0; t--) if (ys[t] !== null && ys[t] !== undefined) { j = t; break; }
          }
        }
        const shown = j === null || j === undefined || !u ? null : u.data[1 + k + r.i][j];
        const raw = j === null || j === undefined || !u ? null : u.data[1 + r.i][j];
        if (shown === null || shown === undefined) {
          r.value.textContent = "—";
          r.at.textContent = "";
          continue;
        }
        r.value.textContent = fmtNumber(shown) + (smoothing && raw !== null ? "  (raw " + fmtNumber(raw) + ")" : "");
        r.at.textContent = !hovering || xs[j] !== xs[idx] ? "step " + fmtStep(xs[j]) : "";
      }
    }
  }

  class ChartSet {
    constructor(options) {
      this.container = options.container;
      this.runs = options.runs;
      this.report = Boolean(options.report);
      this.reportSeries = options.reportSeries || {};
      this.onRunsChanged = options.onRunsChanged || (() => {});
      this.syncKey = "craft-callbacks";
      this.charts = new Map();
      this.smoothing = 0;
      this.log = false;
      this.labelKeys = [];
      this.computeLabels();
    }

    computeLabels() {
      const diffs = differingKeys(this.runs.map((r) => flatten(r.hyperparameters)));
      this.labelKeys = diffs;
    }
    /** "pipeline · a1b2c3  lr=0.001, batch_size=32": two of the hyperparameters that differ (short
     *  values first); the run key above the charts lists them all. */
    legendLabel(run) {
      const flat = flatten(run.hyperparameters);
      const text = (k) => (k in flat ? fmtValue(flat[k]) : "—");
      const short = this.labelKeys.filter((k) => this.runs.every((r) => (k + "=" + fmtValue(flatten(r.hyperparameters)[k])).length <= 24));
      const shown = short.slice(0, 2).map((k) => k + "=" + text(k));
      const more = this.labelKeys.length > shown.length ? ", …" : "";
      return runLabel(run) + (shown.length ? "  " + shown.join(", ") + more : "");
    }

    metrics() {
      const names = new Set();
      for (const run of this.runs) for (const name of Object.keys(run.lists || {})) names.add(name);
      if (this.report) for (const name of Object.keys(this.reportSeries)) names.add(name);
      // Losses first (what people look at), then by name.
      return Array.from(names).sort((a, b) => (/loss/i.test(b) - /loss/i.test(a)) || a.localeCompare(b));
    }

    async start() {
      const metrics = this.metrics();
      if (!metrics.length) {
        this.container.appendChild(h("p", { class: "note", text: "No list metrics recorded yet." }));
      }
      const created = metrics.map((m) => this.add(m));
      await pool(created.map((chart) => () => chart.load()), 2);  // the server is the bottleneck: charts appear one by one
      document.body.dataset.state = "ready";
      this.applyMetricFilter();
    }

    add(metric) {
      const chart = new MetricChart(this, metric);
      this.charts.set(metric, chart);
      const empty = this.container.querySelector(":scope > p.note");
      if (empty) empty.remove();
      this.container.appendChild(chart.el);
      return chart;
    }

    setSmoothing(weight) {
      this.smoothing = weight;
      for (const chart of this.charts.values()) chart.restyle();
    }
    setLog(log) {
      this.log = log;
      for (const chart of this.charts.values()) if (chart.u || chart.overview.size) chart.draw();
    }
    resetZoom() { for (const chart of this.charts.values()) if (chart.zoomed) chart.resetZoom(); }
    zoomChanged() {
      const button = $("reset-zoom");
      if (button) button.disabled = !Array.from(this.charts.values()).some((c) => c.zoomed);
    }
    applyMetricFilter() {
      const input = $("metric-filter");
      const text = input ? input.value.trim().toLowerCase() : "";
      for (const [metric, chart] of this.charts) chart.el.hidden = Boolean(text) && !metric.toLowerCase().includes(text);
    }

    /** Live: the runs that were running, their new status and scalars, new metrics, new points. */
    async poll() {
      const running = this.runs.filter((r) => r.status === "running");
      if (!running.length || this.report) return false;
      const fresh = new Map(((await getJSON("/api/runs")).runs || []).map((r) => [r.id, r]));
      for (const run of running) {
        if (fresh.has(run.id)) Object.assign(run, fresh.get(run.id), { _flat: undefined });
      }
      const added = new Set();
      for (const metric of this.metrics()) {
        if (!this.charts.has(metric)) added.add(this.add(metric));
      }
      const ids = running.map((r) => r.id);
      await pool(Array.from(this.charts.values()).map((chart) => () => {
        if (added.has(chart)) return chart.load();  // a metric new to the page: every run's points
        const mine = ids.filter((id) => chart.runsWithMetric().some((r) => r.id === id));
        return mine.length ? chart.grow(mine) : Promise.resolve(false);
      }), 6);
      this.applyMetricFilter();
      this.onRunsChanged();
      return true;
    }

    live() {
      if (this.report) return;
      const tick = async () => {
        let more = false;
        try {
          more = await this.poll();
          const n = this.runs.filter((r) => r.status === "running").length;
          if (n) setLive("live · " + n + " running · updated " + clock(), "on");
          else setLive(more ? "all runs finished · " + clock() : "", "");
          more = n > 0;
        } catch (error) {
          setLive("cannot reach the dashboard server (" + error.message + "), retrying", "error");
          more = true;
        }
        if (more) setTimeout(tick, POLL_MS);
      };
      if (this.runs.some((r) => r.status === "running")) {
        setLive("live · updated " + clock(), "on");
        setTimeout(tick, POLL_MS);
      }
    }

    wireControls() {
      const slider = $("smoothing");
      const output = $("smoothing-value");
      const log = $("log-scale");
      const query = new URLSearchParams(location.search);
      const initial = this.report ? 0 : Number(query.get("smoothing") || 0);
      slider.value = String(Math.min(0.99, Math.max(0, initial || 0)));
      this.smoothing = Number(slider.value);
      output.value = slider.value;
      output.textContent = slider.value;
      log.checked = !this.report && query.get("log") === "1";
      this.log = log.checked;
      const save = () => {
        if (this.report) return;
        const params = new URLSearchParams(location.search);
        if (this.smoothing > 0) params.set("smoothing", String(this.smoothing)); else params.delete("smoothing");
        if (this.log) params.set("log", "1"); else params.delete("log");
        const search = params.toString().replace(/%2C/gi, ",");
        history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
      };
      slider.addEventListener("input", () => {
        output.value = slider.value;
        output.textContent = slider.value;
        this.setSmoothing(Number(slider.value));
        save();
      });
      log.addEventListener("change", () => { this.setLog(log.checked); save(); });
      $("reset-zoom").addEventListener("click", () => this.resetZoom());
      const filter = $("metric-filter");
      if (filter) filter.addEventListener("input", () => this.applyMetricFilter());
    }
  }

  // ==========================================================================================
  // The compare page (and the report)
  // ==========================================================================================

  function readReport() {
    const node = document.getElementById("report-data");
    if (!node) return null;
    try {
      return JSON.parse(node.textContent);
    } catch (error) {
      showError("The report's data cannot be read: " + error.message);
      return { runs: [], series: {} };
    }
  }
  function showError(text) {
    const box = $("errors");
    if (box) box.appendChild(h("p", { class: "error-box", role: "alert", text }));
  }

  const RUN_KEY_DIFFS = 6;

  function renderRunKey(set) {
    const list = clear($("run-key"));
    set.runs.forEach((run, i) => {
      const flat = flatten(run.hyperparameters);
      const clip = (t) => (t.length > 40 ? t.slice(0, 39) + "…" : t);
      const full = set.labelKeys.map((k) => k + "=" + (k in flat ? fmtValue(flat[k]) : "—"));
      // At most a few in the key (runs of different frameworks differ in ~170 arguments); the
      // table below lists them all, and the title holds every one.
      const shown = full.slice(0, RUN_KEY_DIFFS).map(clip);
      if (full.length > shown.length) shown.push("+" + (full.length - shown.length) + " more (see the table)");
      const diffs = shown.join("  ");
      const name = set.report
        ? h("span", { class: "label", text: runLabel(run), title: run.id })
        : h("a", { class: "label", href: runHref(run.id), text: runLabel(run), title: "Open run " + run.id });
      list.appendChild(h("li", { "data-run": run.id }, [
        swatch(i), name, statusBadge(run.status),
        diffs ? h("span", { class: "diffs", text: diffs, title: full.join("\n") }) : null,
      ]));
    });
    list.hidden = !set.runs.length;
  }

  function renderParams(set) {
    const table = clear($("params"));
    const runs = set.runs;
    const onlyDiff = $("only-diff").checked;
    const filter = $("param-filter").value.trim().toLowerCase();
    const head = h("tr", {}, [h("th", { class: "key", scope: "col", text: "Name" }), h("th", { scope: "col", text: "" })]);
    runs.forEach((run, i) => head.appendChild(h("th", { class: "run-col", scope: "col", title: run.id },
      [swatch(i), runLabel(run)])));
    table.appendChild(h("thead", {}, head));
    let differing = 0;
    let total = 0;
    const groups = [
      ["Scalars", runs.map((r) => r.scalars || {}), true],
      ["Hyperparameters", runs.map((r) => flatten(r.hyperparameters)), false],
    ];
    for (const [title, objects, numeric] of groups) {
      const keys = new Set();
      for (const o of objects) for (const key of Object.keys(o)) keys.add(key);
      const body = h("tbody", { "data-group": title.toLowerCase() });
      body.appendChild(h("tr", { class: "group" }, h("th", { colspan: String(runs.length + 2), scope: "colgroup", text: title + " (" + keys.size + ")" })));
      let shown = 0;
      for (const key of Array.from(keys).sort()) {
        const values = objects.map((o) => o[key]);
        const differs = runs.length > 1 && !sameJSON(values);
        total += 1;
        if (differs) differing += 1;
        const texts = values.map((v) => (v === undefined ? "—" : numeric ? fmtNumber(v) : fmtValue(v)));
        if (onlyDiff && !differs) continue;
        if (filter && !key.toLowerCase().includes(filter) && !texts.some((t) => t.toLowerCase().includes(filter))) continue;
        shown += 1;
        const mark = differs
          ? h("td", { class: "mark" }, [h("span", { class: "diff-mark", "aria-hidden": "true", text: "≠" }), h("span", { class: "diff-text", text: "differs" })])
          : h("td", { class: "mark" });
        const row = h("tr", { class: differs ? "differs" : "same", "data-key": key }, [h("td", { class: "key", text: key }), mark]);
        values.forEach((v, i) => row.appendChild(h("td", {
          class: v === undefined ? "val missing" : "val", title: v === undefined ? "not recorded" : fmtValue(v), text: texts[i],
        })));
        body.appendChild(row);
      }
      if (!shown) {
        body.appendChild(h("tr", {}, h("td", { class: "note", colspan: String(runs.length + 2),
          text: keys.size ? (onlyDiff ? "All the same." : "No row matches.") : "None recorded." })));
      }
      table.appendChild(body);
    }
    $("diff-count").textContent = "(" + differing + " of " + total + ")";
  }

  async function comparePage() {
    const report = readReport();
    const isReport = report !== null;
    let runs = [];
    if (isReport) {
      document.body.classList.add("is-report");
      for (const node of document.querySelectorAll(".report-only")) node.hidden = false;
      runs = Array.isArray(report.runs) ? report.runs : [];
      if (report.generated_at) {
        const g = $("generated");
        g.textContent = "generated " + fmtTime(report.generated_at);
        g.hidden = false;
      }
    } else {
      const param = new URLSearchParams(location.search).get("runs") || "";
      const ids = Array.from(new Set(param.split(",").map((s) => s.trim()).filter(Boolean)));
      if (!ids.length) showError("No runs to compare: open /compare?runs=ID1,ID2 or choose runs on the runs page.");
      // One /api/runs answers for every run given by its id (lists' counts, no value decoded); a
      // prefix, "latest" or an unknown id asks /api/runs/<ref> (which resolves it, or says 404).
      let all = [];
      try { all = (await getJSON("/api/runs")).runs || []; } catch (error) { /* each on its own below */ }
      const byId = new Map(all.map((r) => [r.id, r]));
      const answers = await Promise.all(ids.map((id) => (byId.has(id) ? Promise.resolve(byId.get(id))
        : getJSON("/api/runs/" + encodeURIComponent(id))
          .catch((error) => { showError("Run “" + id + "”: " + error.message); return null; }))));
      const seen = new Set();
      runs = answers.filter((r) => r && !seen.has(r.id) && seen.add(r.id));
    }
    const title = isReport ? "Report: " : "Compare: ";
    $("title").textContent = title + runs.length + (runs.length === 1 ? " run" : " runs");
    document.title = (isReport ? "Report" : "Compare") + " · " + runs.map(runLabel).join(", ") + " · craft-callbacks";
    const pipelines = Array.from(new Set(runs.map((r) => r.pipeline || "run")));
    $("subtitle").textContent = pipelines.join(", ") + (isReport ? " · a self-contained report (no network)" : "");

    const set = new ChartSet({
      container: $("charts"), runs, report: isReport, reportSeries: isReport ? (report.series || {}) : {},
      onRunsChanged: () => { renderRunKey(set); renderParams(set); },
    });
    window.craftUi = { page: "compare", charts: set.charts, set };
    const onlyDiff = $("only-diff");
    const manyRows = runs.length > 1 && runs.some((r) => Object.keys(flatten(r.hyperparameters)).length > 30);
    onlyDiff.checked = manyRows;
    onlyDiff.addEventListener("change", () => renderParams(set));
    $("param-filter").addEventListener("input", () => renderParams(set));
    set.wireControls();
    renderRunKey(set);
    renderParams(set);
    await set.start();
    set.live();
  }

  // ==========================================================================================
  // The run page
  // ==========================================================================================

  function kvRows(table, entries, format) {
    clear(table);
    const body = h("tbody");
    for (const [key, value] of entries) {
      body.appendChild(h("tr", { "data-key": key }, [h("td", { text: key }), h("td", { title: fmtValue(value), text: format(value) })]));
    }
    if (!entries.length) body.appendChild(h("tr", {}, h("td", { colspan: "2", class: "note", text: "None recorded." })));
    table.appendChild(body);
  }

  function renderRunInfo(run) {
    $("title").textContent = runLabel(run);
    clear($("run-status")).appendChild(statusBadge(run.status));
    const facts = clear($("facts"));
    const fact = (name, value) => facts.appendChild(h("div", {}, [h("dt", { text: name }), h("dd", { text: value })]));
    fact("Run id", run.id);
    fact("Pipeline", run.pipeline || "—");
    fact("Deployment", run.deployment || "—");
    fact("Status", run.status || "—");
    fact("Created", fmtTime(run.created_at));
    fact("Ended", fmtTime(run.ended_at));
    fact("Duration", fmtDuration(durationOf(run)));
    kvRows($("scalars"), Object.entries(run.scalars || {}).sort((a, b) => a[0].localeCompare(b[0])), fmtNumber);

    const lists = clear($("lists"));
    const summaries = run.list_summaries || Object.entries(run.lists || {}).map(([name, count]) => ({ name, count }));
    lists.appendChild(h("thead", {}, h("tr", {}, ["List", "Values", "First", "Last", "Min", "Max", "Steps"].map((t, i) =>
      h("th", { scope: "col", class: i ? "num" : "", text: t })))));
    const body = h("tbody");
    for (const s of summaries) {
      const steps = s.first_step === undefined ? "—" : fmtStep(s.first_step) + " – " + fmtStep(s.last_step);
      body.appendChild(h("tr", { "data-key": s.name }, [
        h("td", { class: "mono", text: s.name }), h("td", { class: "num", text: fmtCount(s.count) }),
        h("td", { class: "num", text: fmtNumber(s.first) }), h("td", { class: "num", text: fmtNumber(s.last) }),
        h("td", { class: "num", text: fmtNumber(s.min) }), h("td", { class: "num", text: fmtNumber(s.max) }),
        h("td", { class: "num", text: steps }),
      ]));
    }
    if (!summaries.length) body.appendChild(h("tr", {}, h("td", { colspan: "7", class: "note", text: "No lists recorded." })));
    lists.appendChild(body);

    const hps = Object.entries(flatten(run.hyperparameters)).sort((a, b) => a[0].localeCompare(b[0]));
    const details = $("hyperparameters");
    if (details.dataset.initialised !== "1") {
      details.open = hps.length <= 20;  // HF's ~170 training arguments start collapsed
      details.dataset.initialised = "1";
    }
    $("hp-summary").textContent = "Hyperparameters (" + hps.length + ")" + (details.open ? "" : ": click to show");
    kvRows($("hp-table"), hps, fmtValue);
    filterHyperparameters();
  }

  function filterHyperparameters() {
    const text = $("hp-filter").value.trim().toLowerCase();
    const rows = Array.from($("hp-table").querySelectorAll("tr[data-key]"));
    let shown = 0;
    for (const row of rows) {
      const hit = !text || row.textContent.toLowerCase().includes(text);
      row.hidden = !hit;
      if (hit) shown += 1;
    }
    $("hp-count").textContent = text ? shown + " of " + rows.length + " shown" : rows.length + " in all";
  }

  async function runPage() {
    const parts = location.pathname.split("/").filter(Boolean);
    const id = decodeURIComponent(parts[parts.length - 1] || "");
    $("hp-filter").addEventListener("input", filterHyperparameters);
    $("hyperparameters").addEventListener("toggle", () => {
      const details = $("hyperparameters");
      const n = $("hp-table").querySelectorAll("tr[data-key]").length;
      $("hp-summary").textContent = "Hyperparameters (" + n + ")" + (details.open ? "" : ": click to show");
    });
    let run;
    try {
      run = await getJSON("/api/runs/" + encodeURIComponent(id));
    } catch (error) {
      $("title").textContent = "Run not found";
      showError("Run “" + id + "”: " + error.message);
      return;
    }
    document.title = runLabel(run) + " · craft-callbacks";
    renderRunInfo(run);
    const set = new ChartSet({
      container: $("charts"), runs: [run],
      onRunsChanged: async () => {  // the poll has put the run's new status, scalars and counts in it
        try { Object.assign(run, await getJSON("/api/runs/" + encodeURIComponent(run.id))); } catch (e) { /* next time */ }
        renderRunInfo(run);
      },
    });
    window.craftUi = { page: "run", charts: set.charts, set };
    set.wireControls();
    await set.start();
    set.live();
  }

  // ==========================================================================================

  function main() {
    const page = document.body.dataset.page;
    const run = page === "runs" ? runsPage : page === "compare" ? comparePage : page === "run" ? runPage : null;
    if (!run) return;
    Promise.resolve().then(run).catch((error) => {
      console.error(error);
      showError("The page failed: " + error.message);
    });
  }
  // The report puts its data after this script: wait for the whole document.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();

  // For tests and the benchmark: the pure functions.
  window.craftUiLib = { smooth, parseFilter, matches, shortId, fmtValue, flatten, differingKeys };
})();
