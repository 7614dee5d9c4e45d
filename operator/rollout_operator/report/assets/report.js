"use strict";
// The report's table and trajectory viewer. Every value from the data goes into the page as
// text (textContent), never as markup. Location hash: #t=<index> opens that rollout.
(function () {
  const PAGE = 100;
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const cols = data.columns;
  const n = data.count;
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  const fmt = (v, digits) => (v === null || v === undefined ? "" : Number(v).toFixed(digits));
  const short = (name) => name.slice(name.lastIndexOf(":") + 1);

  const columns = [
    { key: "index", label: "#", value: (i) => i, num: true },
    { key: "row", label: "row", value: (i) => cols.row[i], num: true },
    { key: "sample", label: "sample", value: (i) => cols.sample[i], num: true },
  ];
  if (cols.tag) columns.push({ key: "tag", label: "model", value: (i) => cols.tag[i] || "primary" });
  columns.push({ key: "status", label: "status", value: (i) => cols.status[i], status: true });
  columns.push({ key: "finish", label: "finish", value: (i) => cols.finish[i] });
  data.scorers.forEach((name, s) => columns.push({
    key: "score" + s, label: short(name), title: name, num: true, digits: 3,
    value: (i) => cols.scores[s][i],
  }));
  columns.push(
    { key: "tokens", label: "tokens", value: (i) => cols.tokens[i], num: true },
    { key: "ms", label: "latency s", value: (i) => cols.ms[i], num: true, show: (v) => fmt(v / 1000, 2) },
    { key: "tools", label: "tool calls", value: (i) => cols.tools[i], num: true },
    { key: "category", label: "error", value: (i) => cols.category[i], tip: (i) => cols.error[i] },
    { key: "prompt", label: "prompt", value: (i) => cols.prompt[i], text: true },
  );

  const state = { sort: null, desc: false, page: 0, order: [], open: -1 };
  const body = document.getElementById("table-body");
  const filter = document.getElementById("filter");
  const statusFilter = document.getElementById("status-filter");

  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    return a < b ? -1 : 1;
  }

  function rebuild() {
    const text = filter.value.trim().toLowerCase();
    const status = statusFilter.value;
    const order = [];
    for (let i = 0; i < n; i++) {
      if (status && cols.status[i] !== status) continue;
      if (text && !((cols.prompt[i] || "").toLowerCase().includes(text) ||
          (cols.error[i] || "").toLowerCase().includes(text) ||
          String(cols.row[i]) === text)) continue;
      order.push(i);
    }
    if (state.sort) {
      const value = state.sort.value;
      const sign = state.desc ? -1 : 1;
      order.sort((a, b) => {
        const va = value(a), vb = value(b);
        if (va === null || va === undefined || vb === null || vb === undefined) return compare(va, vb);
        return sign * compare(va, vb) || a - b;
      });
    }
    state.order = order;
    state.page = Math.min(state.page, Math.max(0, Math.ceil(order.length / PAGE) - 1));
    draw();
  }

  function head() {
    const row = document.getElementById("table-head");
    for (const column of columns) {
      const th = el("th", null, column.label);
      th.dataset.key = column.key;
      th.tabIndex = 0;
      if (column.title) th.title = column.title;
      const sort = () => {
        state.desc = state.sort === column ? !state.desc : false;
        state.sort = column;
        for (const other of row.children) other.removeAttribute("aria-sort");
        th.setAttribute("aria-sort", state.desc ? "descending" : "ascending");
        rebuild();
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", (e) => { if (e.key === "Enter") sort(); });
      row.appendChild(th);
    }
  }

  function draw() {
    const start = state.page * PAGE;
    const shown = state.order.slice(start, start + PAGE);
    const rows = document.createDocumentFragment();
    for (const i of shown) {
      const tr = el("tr", i === state.open ? "open" : null);
      tr.dataset.index = i;
      tr.tabIndex = 0;
      for (const column of columns) {
        const v = column.value(i);
        const text = column.show ? column.show(v) : column.digits ? fmt(v, column.digits) : v;
        const td = el("td", column.num ? "num" : column.text ? "text" : null, text);
        if (column.status) td.classList.add("status-" + String(v).replace(/[^a-z]/g, ""));
        if (column.text && v) td.title = v;
        if (column.tip && column.tip(i)) td.title = column.tip(i);
        tr.appendChild(td);
      }
      rows.appendChild(tr);
    }
    body.replaceChildren(rows);
    const total = state.order.length;
    document.getElementById("page-info").textContent = total
      ? `rows ${start + 1}-${start + shown.length} of ${total}` + (total < n ? ` (${n} in all)` : "")
      : `no rows match (${n} in all)`;
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = start + PAGE >= total;
  }

  body.addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (tr) location.hash = "t=" + tr.dataset.index;
  });
  body.addEventListener("keydown", (e) => {
    const tr = e.target.closest("tr");
    if (tr && e.key === "Enter") location.hash = "t=" + tr.dataset.index;
  });
  document.getElementById("prev").addEventListener("click", () => { state.page--; draw(); });
  document.getElementById("next").addEventListener("click", () => { state.page++; draw(); });
  filter.addEventListener("input", () => { state.page = 0; rebuild(); });
  statusFilter.addEventListener("change", () => { state.page = 0; rebuild(); });

  // Trajectories: decompressed and parsed once, when a row is first opened. Their element
  // comes after this script, so that the table is drawn before the browser reads them.
  let trajectories = null;
  function decodeBase64(text) {
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }
  async function loadTrajectories() {
    if (!trajectories) {
      trajectories = (async () => {
        if (document.readyState === "loading") {
          await new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve));
        }
        const bytes = decodeBase64(
          document.getElementById("report-trajectories").textContent.trim());
        const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
        return JSON.parse(await new Response(stream).text());
      })();
    }
    return trajectories;
  }

  function contentText(content) {
    if (typeof content === "string") return content;
    if (Array.isArray(content)) {
      return content.map((p) => (p && p.type === "text" ? p.text : p && p.type ? `[${p.type}]` : ""))
        .join("\n");
    }
    return content === null || content === undefined ? "" : JSON.stringify(content, null, 2);
  }

  function prettyArguments(text) {
    if (typeof text !== "string") return JSON.stringify(text, null, 2);
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
  }

  function facts(pairs) {
    const dl = el("dl", "facts");
    for (const [k, v] of pairs) {
      if (v === null || v === undefined || v === "") continue;
      const div = el("div");
      div.append(el("dt", null, k), el("dd", null, v));
      dl.appendChild(div);
    }
    return dl;
  }

  function message(m, toolNames) {
    const role = ["system", "user", "assistant", "tool"].includes(m.role) ? m.role : "other";
    const box = el("div", "msg role-" + role);
    box.dataset.role = role;
    let label = String(m.role);
    if (m.name) label += " " + m.name;
    if (role === "tool" && m.tool_call_id) {
      label += ` result of ${toolNames[m.tool_call_id] || "call"} (${m.tool_call_id})`;
    }
    box.appendChild(el("div", "msg-head", label));
    const text = contentText(m.content);
    if (text) box.appendChild(el("pre", "content", text));
    for (const call of m.tool_calls || []) {
      const fn = call.function || {};
      const div = el("div", "tool-call");
      div.dataset.tool = fn.name || "";
      div.append(el("span", "name", `${fn.name}(…)`), el("span", "msg-head", call.id ? ` ${call.id}` : ""));
      div.appendChild(el("pre", "arguments", prettyArguments(fn.arguments)));
      box.appendChild(div);
    }
    return box;
  }

  async function show(index) {
    const panel = document.getElementById("trajectory");
    document.body.removeAttribute("data-trajectory");
    if (!(index >= 0 && index < n)) { panel.hidden = true; state.open = -1; draw(); return; }
    state.open = index;
    draw();
    panel.hidden = false;
    panel.replaceChildren(el("p", null, "loading…"));
    let t;
    try {
      t = (await loadTrajectories())[index];
    } catch (e) {
      panel.replaceChildren(el("p", "error-box", "This browser cannot read the trajectories: " + e));
      return;
    }
    if (state.open !== index) return;
    const close = el("button", "close", "close");
    close.type = "button";
    close.addEventListener("click", () => { location.hash = ""; });
    const title = el("h2", null, `${t.id}: row ${cols.row[index]}, sample ${cols.sample[index]}`);
    const scores = Object.entries(t.scores).map(([k, v]) => `${short(k)}=${fmt(v, 3)}`).join(" ");
    const parts = [close, title, facts([
      ["status", cols.status[index]], ["finish", cols.finish[index]], ["scores", scores],
      ["reward", fmt(cols.reward[index], 3)], ["advantage", fmt(t.advantage, 3)],
      ["attempt", t.attempt || null], ["ground truth", t.groundTruth],
      ["tokens", t.usage.total + (t.usage.prompt || t.usage.completion
        ? ` (prompt ${t.usage.prompt}, completion ${t.usage.completion})` : "")],
      ["calls", `${t.usage.llmCalls} model, ${t.usage.toolCalls} tool`],
      ["time", `${fmt(t.timing.total / 1000, 2)} s` + (t.timing.llm || t.timing.tool
        ? ` (model ${fmt(t.timing.llm / 1000, 2)}, tools ${fmt(t.timing.tool / 1000, 2)}, ` +
          `scoring ${fmt(t.timing.scoring / 1000, 2)})` : "")],
    ])];
    if (t.error) {
      const box = el("div", "error-box");
      box.append(el("b", null, cols.category[index] || "error"), el("pre", null, t.error));
      parts.push(box);
    }
    if (!t.messages) {
      parts.push(el("p", "note", "The conversation was not logged."));
    } else {
      const names = {};
      for (const m of t.messages) {
        for (const call of (m && m.tool_calls) || []) names[call.id] = (call.function || {}).name;
      }
      for (const m of t.messages) if (m && typeof m === "object") parts.push(message(m, names));
    }
    panel.replaceChildren(...parts);
    panel.dataset.index = index;
    document.body.dataset.trajectory = String(index);
  }

  function fromHash() {
    const match = /^#t=(\d+)$/.exec(location.hash);
    show(match ? Number(match[1]) : -1);
  }
  window.addEventListener("hashchange", fromHash);

  head();
  rebuild();
  requestAnimationFrame(() => setTimeout(() => {
    document.body.dataset.renderedMs = performance.now().toFixed(1);
    document.body.dataset.ready = "1";
  }, 0));
  if (location.hash) fromHash();
})();
