/* flowstate run inspector: plain JavaScript over the task API (no framework, no build).
   Every view is drawn from /v1 responses; every action is a /v1 request, so the page can do
   nothing a script with the same token could not. */
"use strict";

const app = document.getElementById("app");
const session = { csrf: null, auth: false };
let live = null; // {source, timer} of the open run view
const STEPS_PER_PAGE = 100;
const LIST_PAGE = 50;

// -- helpers ------------------------------------------------------------------------------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function pretty(v) {
  return JSON.stringify(v, null, 2);
}

function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t * 1000);
  return d.toLocaleString(undefined, { hour12: false });
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1) return ms.toFixed(2) + " ms";
  if (ms < 1000) return Math.round(ms) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(2) + " s";
  return (ms / 60000).toFixed(1) + " min";
}

function fmtCost(c) {
  return c === null || c === undefined ? "—" : "$" + c.toFixed(4);
}

function badge(status) {
  return h("span", { class: "badge " + status }, status.replace("_", " "));
}

function toast(text, isError) {
  const t = h("div", { class: "toast" + (isError ? " error" : ""), role: "status" }, text);
  document.body.append(t);
  setTimeout(() => t.remove(), isError ? 7000 : 3500);
}

function runHref(id, step) {
  return "#/run/" + encodeURIComponent(id) + (step !== undefined && step !== null ? "?step=" + step : "");
}

function runPath(id) {
  // subgraph runs are "<task>/<step>/<task path>": the API takes them as a path
  return id.split("/").map(encodeURIComponent).join("/");
}

class ApiError extends Error {
  constructor(status, doc) {
    super((doc && (doc.detail || doc.title)) || "HTTP " + status);
    this.status = status;
    this.doc = doc;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) {
    location.href = "/ui/login";
    throw new ApiError(401, { detail: "log in again" });
  }
  const text = await res.text();
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch (e) { doc = { detail: text }; }
  if (!res.ok) throw new ApiError(res.status, doc);
  return doc;
}

function stopLive() {
  if (live) {
    if (live.source) live.source.close();
    if (live.timer) clearInterval(live.timer);
    if (live.debounce) clearTimeout(live.debounce);
  }
  live = null;
}

// -- routing ------------------------------------------------------------------------------

function route() {
  stopLive();
  const hash = location.hash || "#/";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  if (path.startsWith("/run/")) {
    const id = decodeURIComponent(path.slice(5));
    const step = params.has("step") ? Number(params.get("step")) : null;
    return showRun(id, step).catch(showError);
  }
  return showList(params).catch(showError);
}

function showError(e) {
  app.replaceChildren(h("div", { class: "panel" }, h("p", { class: "error" }, e.message),
    h("p", {}, h("a", { href: "#/" }, "Back to the runs"))));
}

// -- runs list ----------------------------------------------------------------------------

const STATUSES = ["", "queued", "running", "paused", "completed", "failed", "cancelled", "dead"];

function toEpoch(v) {
  if (!v) return null;
  const t = new Date(v).getTime();
  return Number.isFinite(t) ? t / 1000 : null;
}

async function showList(params) {
  const q = new URLSearchParams();
  for (const k of ["status", "graph", "since", "until", "cursor"]) {
    if (params.get(k)) q.set(k, params.get(k));
  }
  q.set("limit", String(LIST_PAGE));
  const page = await api("GET", "/v1/tasks?" + q.toString());
  const prev = (params.get("prev") || "").split(",").filter(Boolean);

  const form = h("form", { class: "filters", id: "filters" },
    h("label", {}, "Run id", h("input", { name: "id", id: "search-id", placeholder: "search by id", size: 20 })),
    h("label", {}, "Status", h("select", { name: "status", id: "filter-status" },
      STATUSES.map((s) => h("option", { value: s, selected: params.get("status") === s }, s || "any")))),
    h("label", {}, "Graph", h("input", { name: "graph", id: "filter-graph", value: params.get("graph") || "", size: 14 })),
    h("label", {}, "Created after", h("input", { type: "datetime-local", name: "since", id: "filter-since",
      value: params.get("sinceText") || "" })),
    h("label", {}, "Created before", h("input", { type: "datetime-local", name: "until", id: "filter-until",
      value: params.get("untilText") || "" })),
    h("button", { type: "submit", class: "primary" }, "Apply"),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const id = String(f.get("id") || "").trim();
    if (id) {
      location.hash = runHref(id);
      return;
    }
    const n = new URLSearchParams();
    if (f.get("status")) n.set("status", f.get("status"));
    if (f.get("graph")) n.set("graph", String(f.get("graph")).trim());
    const since = toEpoch(f.get("since")), until = toEpoch(f.get("until"));
    if (since !== null) { n.set("since", String(since)); n.set("sinceText", f.get("since")); }
    if (until !== null) { n.set("until", String(until)); n.set("untilText", f.get("until")); }
    location.hash = "#/?" + n.toString();
  });

  const rows = page.items.map((t) =>
    h("tr", { class: "clickable", dataset: { run: t.id }, onclick: () => { location.hash = runHref(t.id); } },
      h("td", { class: "mono" }, h("a", { href: runHref(t.id) }, t.id)),
      h("td", {}, t.graph),
      h("td", {}, badge(t.status)),
      h("td", {}, fmtTime(t.created_at)),
      h("td", { class: "num" }, fmtMs(t.duration_ms)),
      h("td", { class: "num" }, t.head_step),
      h("td", { class: "num" }, t.activations ?? ""),
      h("td", { class: "num" }, t.tokens ?? ""),
      h("td", { class: "num" }, fmtCost(t.cost_usd)),
    ));

  const nav = (cursor, stack) => {
    const n = new URLSearchParams(params);
    if (cursor) n.set("cursor", cursor); else n.delete("cursor");
    if (stack.length) n.set("prev", stack.join(",")); else n.delete("prev");
    location.hash = "#/?" + n.toString();
  };
  const pager = h("div", { class: "pager" },
    h("button", { id: "prev-page", disabled: !params.get("cursor"),
      onclick: () => { const s = prev.slice(); const c = s.pop(); nav(c === "-" ? null : c, s); } }, "← Newer"),
    h("button", { id: "next-page", disabled: !page.next_cursor,
      onclick: () => nav(page.next_cursor, [...prev, params.get("cursor") || "-"]) }, "Older →"),
    h("span", { class: "muted" }, `${page.items.length} runs on this page, newest first`),
  );

  app.replaceChildren(
    h("div", { class: "panel" }, h("h1", {}, "Runs"), form),
    h("div", { class: "panel" },
      h("table", { id: "runs" },
        h("thead", {}, h("tr", {},
          ["Run", "Graph", "Status", "Created", "Duration", "Steps", "Activations", "Tokens", "Cost"]
            .map((c, i) => h("th", { class: i >= 4 ? "num" : "" }, c)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No runs match.")))),
      pager),
  );
}

// -- one run ------------------------------------------------------------------------------

const state = { run: null, page: null, selected: null };

async function showRun(id, step) {
  refreshGen++;
  const overview = await api("GET", `/v1/tasks/${runPath(id)}/overview`);
  state.run = overview;
  state.selected = null;
  const start = step !== null ? Math.floor(step / STEPS_PER_PAGE) * STEPS_PER_PAGE : 0;
  const page = await api("GET", `/v1/tasks/${runPath(id)}/history?start=${start}&limit=${STEPS_PER_PAGE}`);
  state.page = page;
  renderRun();
  window.scrollTo(0, 0);
  if (step !== null) {
    const a = page.items.find((x) => x.step === step);
    if (a) selectActivation(a);
  }
  startLive();
}

function renderRun() {
  const r = state.run;
  const links = r.links.map((l) => h("li", {},
    ({ fork_parent: "forked from ", fork: "fork ", subgraph_parent: "subgraph run of ", subgraph: "subgraph run " })[l.relation],
    h("a", { href: runHref(l.id), class: "mono", dataset: { relation: l.relation } }, l.id),
    " ", badge(l.status), l.step !== null ? ` at step ${l.step}` : ""));

  const legend = h("div", { class: "legend" },
    ["ran", "running", "interrupted", "paused", "failed", "never_reached"].map((s) =>
      h("span", {}, h("i", { class: s }), s.replace("_", " "))));
  const graphBox = h("div", { class: "graph-box", id: "graph" });
  graphBox.innerHTML = r.svg; // drawn by the server from the stored graph document; labels escaped
  graphBox.querySelectorAll(".fs-node").forEach((g) => {
    g.addEventListener("click", () => filterNode(g.dataset.node));
  });

  app.replaceChildren(
    h("div", { class: "panel", id: "run-header" },
      h("div", { class: "row" },
        h("div", { class: "grow" },
          h("h1", {}, "Run ", h("span", { class: "mono", id: "run-id" }, r.id), " ", badge(r.status),
            (r.status === "running" || r.status === "queued") ? h("span", { class: "live", id: "live" }, " ● live") : null),
          h("div", { class: "facts" },
            h("div", {}, h("span", {}, "graph"), r.graph),
            h("div", {}, h("span", {}, "created"), fmtTime(r.created_at)),
            h("div", {}, h("span", {}, "duration"), fmtMs(r.duration_ms)),
            h("div", {}, h("span", {}, "steps"), r.head_step),
            h("div", {}, h("span", {}, "activations"), r.activations),
            h("div", {}, h("span", {}, "tokens"), `${r.tokens.input_tokens || 0} in / ${r.tokens.output_tokens || 0} out`),
            h("div", {}, h("span", {}, "cost"), fmtCost(r.cost_usd))),
          r.error ? h("p", { class: "error", id: "run-error" }, r.error) : null,
          r.reason ? h("p", { class: "muted", id: "run-reason" }, "reason: " + r.reason) : null,
          links.length ? h("ul", { id: "links" }, links) : null),
        h("div", {}, actionButtons(r)))),
    h("div", { class: "row" },
      h("div", { class: "side" },
        h("div", { class: "panel" }, h("h2", {}, "Graph"), graphBox, legend,
          h("details", {}, h("summary", {}, "Mermaid"), h("pre", { class: "json", id: "mermaid" }, r.mermaid))),
      ),
      h("div", { class: "grow" },
        r.interrupts.length ? interruptsPanel(r) : null,
        h("div", { class: "panel", id: "replay-panel", hidden: true }),
        h("div", { class: "panel", id: "timeline-panel" }, timelineView()),
        h("div", { class: "panel", id: "detail", hidden: true }))),
  );
  if (!r.actions) {
    const note = r.id.includes("/")
      ? "A subgraph run: act on its parent task."
      : "Read-only: this inspector does not serve this run's graph.";
    document.getElementById("run-header").append(h("p", { class: "muted", id: "read-only" }, note));
  }
}

function actionButtons(r) {
  if (!r.actions) return [];
  const id = r.id;
  const act = (label, fn, cls, show) => show
    ? h("button", { class: cls || "", id: "act-" + label.toLowerCase(), onclick: async (ev) => {
        ev.target.disabled = true;
        try { await fn(); } catch (e) { toast(e.message, true); } finally { ev.target.disabled = false; }
      } }, label)
    : null;
  const s = r.status;
  return h("div", { class: "actions" },
    act("Pause", async () => {
      const res = await api("POST", `/v1/tasks/${runPath(id)}/pause`);
      toast(`run is ${res.status}`);
      await refresh();
    }, "", s === "running"),
    act("Resume", async () => {
      const res = await api("POST", `/v1/tasks/${runPath(id)}/resume`, {});
      toast(`run is ${res.status}`);
      await refresh();
      startLive();
    }, "primary", ["paused", "failed", "cancelled", "dead"].includes(s) && !pendingInterrupts(r).length),
    act("Cancel", async () => {
      const res = await api("POST", `/v1/tasks/${runPath(id)}/cancel`);
      toast(`run is ${res.status}`);
      await refresh();
    }, "danger", s !== "completed" && s !== "cancelled"),
    act("Replay", async () => {
      const rep = await api("POST", `/v1/tasks/${runPath(id)}/replay`);
      showReplay(rep);
    }, "", true),
  );
}

function pendingInterrupts(r) {
  return r.interrupts.filter((i) => !i.answered);
}

function interruptsPanel(r) {
  const pending = pendingInterrupts(r);
  const answered = r.interrupts.filter((i) => i.answered);
  const panel = h("div", { class: "panel", id: "interrupts" }, h("h2", {}, "Interrupts"));
  for (const i of pending) {
    const input = h("textarea", { rows: 2, id: "answer-" + i.id.replace(/[^A-Za-z0-9]/g, "_"),
      class: "answer", placeholder: "answer as JSON (true, \"text\", {\"ok\": false})" });
    const box = h("div", { class: "interrupt pending", dataset: { interrupt: i.id } },
      h("div", {}, h("b", {}, i.node), ` at step ${i.step} `, h("span", { class: "muted mono" }, i.id),
        i.deadline != null ? h("span", { class: "deadline muted" },
          ` · times out ${new Date(i.deadline * 1000).toISOString().replace(".000", "")}`) : ""),
      h("pre", { class: "payload" }, pretty(i.payload)));
    if (r.actions && r.status === "paused") {
      box.append(input, h("button", { class: "primary answer-btn", onclick: async (ev) => {
        const raw = input.value.trim();
        let value;
        try { value = raw === "" ? null : JSON.parse(raw); } catch (e) { value = raw; }
        ev.target.disabled = true;
        try {
          const res = await api("POST", `/v1/tasks/${runPath(r.id)}/resume`, answerBody(i, value));
          toast(`answered; run is ${res.status}`);
          await refresh();
          startLive();
        } catch (e) { toast(e.message, true); ev.target.disabled = false; }
      } }, "Answer"));
    }
    panel.append(box);
  }
  if (answered.length) {
    panel.append(h("h3", {}, "Answered"));
    for (const i of answered) {
      panel.append(h("div", { class: "interrupt answered" },
        h("div", {}, h("b", {}, i.node), ` at step ${i.step} → `, h("code", {}, JSON.stringify(i.answer))),
        h("details", {}, h("summary", {}, "payload"), h("pre", {}, pretty(i.payload)))));
    }
  }
  return panel;
}

function answerBody(interrupt, value) {
  // by its stable id: the other pending interrupts (if any) stay pending
  return { answers: { [interrupt.id]: value } };
}

function showReplay(rep) {
  const panel = document.getElementById("replay-panel");
  panel.hidden = false;
  const kids = [h("h2", {}, "Replay")];
  if (rep.identical) {
    kids.push(h("div", { class: "report identical", id: "replay-report" },
      h("b", {}, "Identical. "), `${rep.activations} activations replayed from the journal; no LLM, tool or network call.`));
  } else {
    const d = rep.first_divergence || {};
    const fields = Object.entries(d.fields || {});
    kids.push(h("div", { class: "report diverged", id: "replay-report" },
      h("b", {}, `Diverged at step ${d.step}, node '${d.node}'. `), d.message || "",
      fields.length ? h("table", { class: "diff" },
        h("thead", {}, h("tr", {}, h("th", {}, "field"), h("th", {}, "recorded"), h("th", {}, "replayed"))),
        h("tbody", {}, fields.map(([k, v]) => h("tr", {}, h("td", { class: "mono" }, k),
          h("td", {}, h("pre", {}, pretty(v.recorded))), h("td", {}, h("pre", {}, pretty(v.replayed))))))) : null,
      d.effect ? h("pre", { class: "json" }, pretty(d.effect)) : null));
  }
  kids.push(h("p", { class: "muted" }, `recorded: ${rep.recorded_status}; replay: ${rep.replay_status}`));
  panel.replaceChildren(...kids);
}

// -- timeline -----------------------------------------------------------------------------

let nodeFilter = null;

function filterNode(node) {
  nodeFilter = nodeFilter === node ? null : node;
  document.getElementById("timeline-panel").replaceChildren(...timelineView());
}

function timelineView() {
  const r = state.run, p = state.page;
  const t0 = r.created_at;
  const items = nodeFilter ? p.items.filter((a) => a.node === nodeFilter) : p.items;
  const rows = items.map((a) => {
    const tr = h("tr", { class: "clickable activation", dataset: { step: a.step, task: a.task_path },
      tabindex: 0, onclick: () => selectActivation(a),
      onkeydown: (ev) => { if (ev.key === "Enter") selectActivation(a); } },
      h("td", { class: "num" }, a.step),
      h("td", {}, a.node, a.task_path !== a.node ? h("span", { class: "muted" }, " " + a.task_path) : null),
      h("td", { class: "num" }, "+" + fmtMs((a.started_at - t0) * 1000)),
      h("td", { class: "num" }, fmtMs(a.duration_ms)),
      h("td", { class: "num" }, a.attempts),
      h("td", { class: "num" }, (a.tokens.input_tokens || 0) + (a.tokens.output_tokens || 0) || ""),
      h("td", { class: "num" }, a.effects || ""),
      h("td", { class: "mono" }, a.writes.join(", ")),
      h("td", {}, a.child_run ? [
        h("button", { class: "link-btn expand", title: "show the subgraph's steps here",
          onclick: (ev) => { ev.stopPropagation(); toggleNested(ev.target, a.child_run); } }, "▸ steps"),
        " ",
        h("a", { href: runHref(a.child_run), class: "child-link",
          onclick: (ev) => ev.stopPropagation() }, "open run")] : null));
    if (state.selected && state.selected.step === a.step && state.selected.task_path === a.task_path) {
      tr.classList.add("selected");
    }
    return tr;
  });
  const go = h("input", { type: "number", min: 0, max: r.head_step, id: "goto-step", placeholder: "step", style: null, size: 6 });
  const load = async (start) => {
    state.page = await api("GET", `/v1/tasks/${runPath(r.id)}/history?start=${start}&limit=${STEPS_PER_PAGE}`);
    document.getElementById("timeline-panel").replaceChildren(...timelineView());
  };
  return [
    h("div", { class: "row" }, h("h2", { class: "grow" }, "Timeline",
      nodeFilter ? h("span", { class: "muted" }, ` (node ${nodeFilter}; click it again to clear)`) : null),
      h("span", { class: "muted", id: "timeline-range" },
        `steps ${p.start}–${Math.max(p.start, p.stop - 1)} of 0–${p.head_step}`)),
    h("div", { class: "timeline-box" }, h("table", { id: "timeline" },
      h("thead", {}, h("tr", {}, ["Step", "Node", "Start", "Duration", "Attempts", "Tokens", "Effects", "Wrote", ""]
        .map((c, i) => h("th", { class: [0, 2, 3, 4, 5, 6].includes(i) ? "num" : "" }, c)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, class: "muted" },
        "No committed activations in these steps."))))),
    h("div", { class: "pager" },
      h("button", { id: "timeline-prev", disabled: p.start === 0,
        onclick: () => load(Math.max(0, p.start - STEPS_PER_PAGE)) }, "← Earlier steps"),
      h("button", { id: "timeline-next", disabled: p.next_start === null,
        onclick: () => load(p.next_start) }, "Later steps →"),
      go,
      h("button", { id: "goto-btn", onclick: async () => {
        const s = Number(go.value);
        if (!Number.isFinite(s) || s < 0) return;
        await load(Math.floor(s / STEPS_PER_PAGE) * STEPS_PER_PAGE);
        const a = state.page.items.find((x) => x.step === s);
        if (a) selectActivation(a);
      } }, "Go to step")),
  ];
}

async function toggleNested(button, childId) {
  const tr = button.closest("tr");
  const shown = document.querySelectorAll(`#timeline tr.nested[data-parent="${CSS.escape(childId)}"]`);
  if (shown.length) {
    shown.forEach((x) => x.remove());
    button.textContent = "▸ steps";
    return;
  }
  const page = await api("GET", `/v1/tasks/${runPath(childId)}/history?start=0&limit=${STEPS_PER_PAGE}`);
  const depth = childId.split("/").length / 2; // each subgraph level adds "/<step>/<path>"
  const rows = page.items.map((c) => h("tr", { class: "clickable nested", tabindex: 0,
    dataset: { parent: childId, step: c.step, task: c.task_path },
    onclick: () => { location.hash = runHref(childId, c.step); } },
    h("td", { class: "num muted" }, c.step),
    h("td", { style: null, class: "nested-node", dataset: { depth: Math.floor(depth) } }, "↳ " + c.node),
    h("td", { class: "num" }, ""),
    h("td", { class: "num" }, fmtMs(c.duration_ms)),
    h("td", { class: "num" }, c.attempts),
    h("td", { class: "num" }, (c.tokens.input_tokens || 0) + (c.tokens.output_tokens || 0) || ""),
    h("td", { class: "num" }, c.effects || ""),
    h("td", { class: "mono" }, c.writes.join(", ")),
    h("td", {}, c.child_run ? h("a", { href: runHref(c.child_run), onclick: (ev) => ev.stopPropagation() },
      "open subgraph run") : null)));
  tr.after(...rows);
  button.textContent = "▾ steps";
}

// -- one activation: state, diff, effects, fork -------------------------------------------

async function selectActivation(a) {
  state.selected = a;
  document.querySelectorAll("#timeline tr.activation").forEach((tr) => {
    const on = Number(tr.dataset.step) === a.step && tr.dataset.task === a.task_path;
    tr.classList.toggle("selected", on);
    if (on) tr.scrollIntoView({ block: "nearest" });
  });
  const r = state.run;
  const panel = document.getElementById("detail");
  panel.hidden = false;
  panel.replaceChildren(h("p", { class: "muted" }, "Loading step " + a.step + "…"));
  // the state after the step is the state at the start of the next one
  const after = a.step + 1 <= r.head_step ? a.step + 1 : a.step;
  const [st, fx] = await Promise.all([
    api("GET", `/v1/tasks/${runPath(r.id)}/state?step=${after}`),
    api("GET", `/v1/tasks/${runPath(r.id)}/effects?step=${a.step}&task_path=${encodeURIComponent(a.task_path)}`),
  ]);
  if (state.selected !== a) return;
  const heading = after === a.step + 1
    ? `State after step ${a.step} (${a.node})` : `State at step ${a.step} (the step is still open)`;
  const diffRows = st.diff.map((d) => h("tr", { class: d.op },
    h("td", { class: "op" }, d.op), h("td", { class: "mono" }, d.path),
    h("td", {}, d.op === "add" ? "" : h("pre", {}, pretty(d.before))),
    h("td", {}, d.op === "remove" ? "" : h("pre", {}, pretty(d.after)))));
  const tabs = h("div", { class: "tabs" });
  const body = h("div", {});
  const views = {
    Changes: () => h("div", { id: "diff-view" },
      st.exact ? null : h("div", { class: "notice" },
        "Without the graph's code the reducers are unknown: these are the fields the step wrote."),
      diffRows.length ? h("table", { class: "diff", id: "diff" },
        h("thead", {}, h("tr", {}, h("th", {}, "op"), h("th", {}, "path"), h("th", {}, "before"), h("th", {}, "after"))),
        h("tbody", {}, diffRows)) : h("p", { class: "muted", id: "diff" }, "No change.")),
    State: () => h("div", { id: "state-view" },
      st.exact ? null : h("div", { class: "notice" },
        `Snapshot at step ${st.snapshot_step}; the updates after it are listed below (start the inspector with --graphs to apply them).`),
      h("pre", { class: "json", id: "state-json" }, pretty(st.state)),
      st.pending_updates.length ? h("pre", { class: "json" }, pretty(st.pending_updates)) : null),
    [`Effects (${fx.items.length})`]: () => effectsView(fx),
    Fork: () => forkView(a),
  };
  const show = (name) => {
    tabs.querySelectorAll("button").forEach((b) => b.classList.toggle("on", b.dataset.tab === name));
    body.replaceChildren(views[name]());
  };
  for (const name of Object.keys(views)) {
    if (name === "Fork" && !r.actions) continue;
    tabs.append(h("button", { dataset: { tab: name }, id: "tab-" + name.split(" ")[0].toLowerCase(),
      onclick: () => show(name) }, name));
  }
  panel.replaceChildren(h("h2", { id: "detail-title" }, heading), tabs, body);
  show("Changes");
  panel.scrollIntoView({ block: "nearest" });
}

function blocksOf(content) {
  if (typeof content === "string") return [{ type: "text", text: content }];
  return Array.isArray(content) ? content : [content];
}

function renderBlock(b) {
  if (b.type === "text") return h("div", {}, b.text);
  if (b.type === "tool_use") return h("div", {}, h("b", {}, "calls " + b.name + " "), h("pre", {}, pretty(b.input)));
  if (b.type === "tool_result") {
    return h("div", {}, h("b", {}, "result" + (b.is_error ? " (error)" : "") + " "),
      h("pre", {}, typeof b.content === "string" ? b.content : pretty(b.content)));
  }
  return h("pre", {}, pretty(b));
}

function effectsView(fx) {
  if (!fx.items.length) return h("p", { class: "muted", id: "effects" }, "This activation made no journaled effect.");
  return h("div", { id: "effects" }, fx.items.map((e) => {
    if (e.kind === "llm") {
      const req = (e.request && e.request.args && e.request.args[0]) || e.request || {};
      const res = e.response || {};
      const turns = [];
      if (req.system) turns.push(h("div", { class: "msg system" }, h("div", { class: "who" }, "system"), req.system));
      for (const m of req.messages || []) {
        turns.push(h("div", { class: "msg " + (m.role === "assistant" ? "assistant" : "user") },
          h("div", { class: "who" }, m.role), blocksOf(m.content).map(renderBlock)));
      }
      const reply = res.content && res.content.length ? res.content
        : [{ type: "text", text: res.text || "" }, ...(res.tool_calls || []).map((c) => ({ type: "tool_use", ...c }))];
      turns.push(h("div", { class: "msg assistant reply" },
        h("div", { class: "who" }, "assistant" + (res.model ? " · " + res.model : "")), reply.map(renderBlock),
        res.usage ? h("div", { class: "muted" }, `${res.usage.input_tokens} in / ${res.usage.output_tokens} out tokens` +
          (res.stop_reason ? ` · ${res.stop_reason}` : "")) : null));
      return h("div", { class: "effect llm" }, h("h3", {}, `#${e.seq} LLM call`), h("div", { class: "chat" }, turns));
    }
    return h("div", { class: "effect " + e.kind }, h("h3", {}, `#${e.seq} ${e.name}`),
      h("div", { class: "row" },
        h("div", { class: "grow" }, h("b", {}, "request"), h("pre", { class: "json" }, pretty(e.request))),
        h("div", { class: "grow" }, h("b", {}, "result"), h("pre", { class: "json" }, pretty(e.response)))));
  }));
}

function forkView(a) {
  const r = state.run;
  const patch = h("textarea", { rows: 5, id: "fork-patch" }, "{}");
  const at = h("input", { type: "number", id: "fork-at", min: 0, max: r.head_step, value: a.step });
  return h("div", { id: "fork-view" },
    h("p", {}, "Start a new run from the state at the start of a step (that step runs again), with a state ",
      "patch applied through the reducers and validated like a node's update."),
    h("label", {}, "Fork at step ", at),
    h("div", {}, h("label", { for: "fork-patch" }, "State patch (JSON object)")), patch,
    h("button", { class: "primary", id: "fork-btn", onclick: async (ev) => {
      let update;
      try { update = JSON.parse(patch.value || "{}"); } catch (e) { toast("the patch is not JSON: " + e.message, true); return; }
      ev.target.disabled = true;
      try {
        const res = await api("POST", `/v1/tasks/${runPath(r.id)}/fork`, { at: Number(at.value), update });
        toast(`forked: run ${res.id} is ${res.status}`);
        location.hash = runHref(res.id);
      } catch (e) { toast(e.message, true); ev.target.disabled = false; }
    } }, "Fork"));
}

// -- live updates ------------------------------------------------------------------------

let refreshGen = 0;

async function refresh() {
  const r = state.run;
  if (!r) return;
  const mine = ++refreshGen; // the latest refresh wins: an older one still in flight is dropped
  const keep = state.selected;
  const overview = await api("GET", `/v1/tasks/${runPath(r.id)}/overview`);
  const start = state.page ? state.page.start : 0;
  const page = await api("GET", `/v1/tasks/${runPath(r.id)}/history?start=${start}&limit=${STEPS_PER_PAGE}`);
  if (mine !== refreshGen || !state.run || state.run.id !== r.id) return;
  const replay = document.getElementById("replay-panel");
  const replayKids = replay && !replay.hidden ? [...replay.childNodes] : null;
  state.run = overview;
  state.page = page;
  renderRun();
  if (replayKids) {
    const p = document.getElementById("replay-panel");
    p.hidden = false;
    p.replaceChildren(...replayKids);
  }
  if (keep) {
    const a = page.items.find((x) => x.step === keep.step && x.task_path === keep.task_path);
    if (a) selectActivation(a);
  }
  if (!["running", "queued"].includes(overview.status)) stopLive();
}

function startLive() {
  const r = state.run;
  if (!r || !["running", "queued"].includes(r.status) || live) return;
  live = {};
  const later = () => {
    if (!live || live.debounce) return;
    live.debounce = setTimeout(() => { if (live) live.debounce = null; refresh().catch(() => {}); }, 300);
  };
  if (r.actions && !r.id.includes("/") && window.EventSource) {
    // the service executes the run: follow its event stream
    const src = new EventSource(`/v1/tasks/${runPath(r.id)}/events`);
    live.source = src;
    for (const kind of ["node_started", "node_finished", "step_finished", "run_finished", "node_failed"]) {
      src.addEventListener(kind, (ev) => {
        if (kind === "run_finished") {
          const data = JSON.parse(ev.data);
          if (data.run_id === r.id) { src.close(); }
        }
        later();
      });
    }
    src.onerror = () => { src.close(); };
    // a run executed by another process (a worker) streams only its end: poll as well
    live.timer = setInterval(later, 3000);
  } else {
    // a read-only inspector: poll the store
    live.timer = setInterval(later, 1500);
  }
}

// -- start --------------------------------------------------------------------------------

async function boot() {
  try {
    const s = await api("GET", "/ui/session");
    session.csrf = s.csrf;
    session.auth = s.auth;
    document.getElementById("logout").hidden = !s.auth;
  } catch (e) {
    return;
  }
  window.addEventListener("hashchange", route);
  await route();
}

boot();
