"use strict";
// The Lowkey web app: conversations (a sidebar, a thread that scrolls on
// its own, a composer that stays), device toggles, the focus pane,
// devices and pairing, audit, people and the owner's settings. Plain DOM;
// Markdown through marked and DOMPurify (vendored under /assets/vendor).
// Every open page holds the box's event stream: what another person
// changes shows here at once.

const state = { me: null, ws: null, live: null, timers: [], box: null, onBox: null, gen: 0 };
const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined && k !== false) e.append(k.nodeType ? k : document.createTextNode(k));
  return e;
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.me && state.me.csrf && method !== "GET") headers["X-CSRF-Token"] = state.me.csrf;
  const r = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) {
    const msg = data && data.error ? data.error.message : r.statusText;
    const err = new Error(msg);
    err.status = r.status;
    err.code = data && data.error ? data.error.code : "";
    throw err;
  }
  return data;
}

// ---- errors where they happened ----------------------------------------

// errorSlot is a place for a region's errors: each stays until dismissed.
function errorSlot() {
  const node = el("div", { class: "errors" });
  return {
    node,
    show(msg) {
      const line = el("div", { class: "error", role: "alert" }, el("span", { text: msg }),
        el("button", { type: "button", class: "small", "aria-label": "Dismiss", text: "Dismiss", onclick: () => line.remove() }));
      node.append(line);
    },
    clear() { node.replaceChildren(); },
  };
}

// guard runs fn and shows its failure in slot.
function guard(slot, fn) {
  return async (...args) => {
    try { return await fn(...args); } catch (e) { slot.show(e.message); }
  };
}

function copyButton(getText, label = "Copy") {
  const b = el("button", { type: "button", class: "small copy", text: label });
  b.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(getText()); b.textContent = "Copied"; }
    catch { b.textContent = "Select and copy"; }
    setTimeout(() => { b.textContent = label; }, 1500);
  });
  return b;
}

// ---- Markdown -----------------------------------------------------------

// markdown renders an agent's words: marked for the syntax, DOMPurify for
// safety (no script, no handler, no javascript: link), links to a new tab,
// code blocks with Copy.
function markdown(text) {
  const box = el("div", { class: "md" });
  if (!window.marked || !window.DOMPurify) { box.append(el("p", { class: "plain", text })); return box; }
  const html = window.DOMPurify.sanitize(window.marked.parse(text, { gfm: true, breaks: false, async: false }), {
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
    FORBID_ATTR: ["style"],
  });
  box.innerHTML = html;
  // An image loads only from the reply itself (data:); any other becomes
  // a link, so a reply never makes the page fetch anything.
  for (const img of box.querySelectorAll("img")) {
    const src = img.getAttribute("src") || "";
    if (/^data:image\//i.test(src)) { if (!img.alt) img.alt = "An image from the agent"; continue; }
    img.replaceWith(el("a", { href: src, text: "image: " + (img.alt || src) }));
  }
  for (const a of box.querySelectorAll("a")) { a.target = "_blank"; a.rel = "noopener noreferrer nofollow"; }
  for (const pre of box.querySelectorAll("pre")) {
    const wrap = el("div", { class: "code" });
    pre.replaceWith(wrap);
    wrap.append(copyButton(() => pre.innerText), pre);
  }
  for (const t of box.querySelectorAll("table")) {
    const wrap = el("div", { class: "table-wrap" });
    t.replaceWith(wrap);
    wrap.append(t);
  }
  return box;
}

// ---- the box's event stream ----------------------------------------------

function connectBox() {
  if (state.box) return;
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/events`);
  state.box = ws;
  ws.onmessage = m => { const e = JSON.parse(m.data); if (state.onBox) state.onBox(e); };
  ws.onclose = () => {
    if (state.box !== ws) return;
    state.box = null;
    // Back after a gap: read everything again, the change may be missed.
    setTimeout(() => { if (state.me && !state.box) { connectBox(); if (state.onBox) state.onBox({ type: "reconnected" }); } }, 1000);
  };
}

function stopAll() {
  if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
  stopLive();
  state.timers.forEach(t => { clearInterval(t); clearTimeout(t); });
  state.timers = [];
  state.onBox = null;
  document.body.classList.remove("chat");
}

// A route drawn after a newer one started is not drawn at all: a slow
// answer never replaces the page the person went to since.
class Stale extends Error {}

function main(gen, ...kids) {
  if (gen !== state.gen) throw new Stale();
  const m = $("#main");
  m.replaceChildren(...kids);
  // Which route this is, once drawn.
  m.dataset.view = location.hash.replace(/^#/, "") || "/";
  return m;
}

async function route() {
  stopAll();
  state.gen++;
  const h = location.hash.replace(/^#/, "") || "/";
  const setup = h.match(/^\/setup\/(.+)$/);
  if (setup) return showSetup(setup[1]);
  if (!state.me) {
    try { state.me = await api("GET", "/api/v1/me"); } catch { return showLogin(); }
  }
  $("#top").hidden = false;
  $("#who").textContent = state.me.name + (state.me.role === "owner" ? " (owner)" : "");
  if (state.me.box) {
    // Which box this is, in the tab and the header.
    document.title = `${state.me.box} — Lowkey`;
    $(".brand").textContent = `Lowkey · ${state.me.box}`;
  }
  document.querySelectorAll("[data-owner]").forEach(e => e.hidden = state.me.role !== "owner");
  for (const a of document.querySelectorAll("#top nav a")) {
    const here = a.getAttribute("href") === "#" + h || (a.getAttribute("href") === "#/" && h.startsWith("/c/"));
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  connectBox();
  const conv = h.match(/^\/c\/(.+)$/);
  try {
    if (conv) return await showConversation(conv[1]);
    if (h === "/devices") return await showDevices();
    if (h === "/audit") return await showAudit();
    if (h === "/people") return await showPeople();
    if (h === "/settings") return await showSettings();
    return await showConversations();
  } catch (e) {
    if (e instanceof Stale) return;
    if (e.status === 401) { state.me = null; return showLogin(); }
    const slot = errorSlot();
    slot.show(e.message);
    main(state.gen, el("section", { class: "page" }, slot.node));
  }
}

function form(title, fields, submit, onsubmit, note) {
  const slot = errorSlot();
  const f = el("form", { class: "card narrow", "aria-label": title },
    el("h1", { text: title }), note ? el("p", { class: "muted", text: note }) : null, slot.node,
    ...fields.map(([name, label, type, extra]) => el("label", {}, label, el("input", Object.assign({ name, type, required: true, autocomplete: type === "password" ? "current-password" : "username" }, extra || {})))),
    el("button", { type: "submit", class: "primary", text: submit }));
  f.addEventListener("submit", async ev => {
    ev.preventDefault();
    slot.clear();
    const data = Object.fromEntries(new FormData(f));
    try { await onsubmit(data); } catch (e) { slot.show(e.message); }
  });
  return f;
}

const nameRule = { pattern: "[a-zA-Z0-9][a-zA-Z0-9._\\-]{0,31}", maxlength: 32, title: "1 to 32 letters, digits, '.', '_' or '-'" };
const newPassword = { minlength: 10, maxlength: 72, autocomplete: "new-password", title: "10 to 72 characters" };

function showSetup(token) {
  const gen = state.gen;
  $("#top").hidden = true;
  main(gen, form("Create the owner", [["name", "Your name", "text", nameRule], ["password", "Password (10 characters or more)", "password", newPassword]], "Create and sign in",
    async d => {
      state.me = await api("POST", "/api/v1/setup", { token, name: d.name, password: d.password });
      location.hash = "#/";
    }, "This link works once. The owner manages people and paired computers."));
}

function showLogin() {
  const gen = state.gen;
  $("#top").hidden = true;
  main(gen, form("Sign in to Lowkey", [["name", "Name", "text"], ["password", "Password", "password"]], "Sign in",
    async d => {
      state.me = await api("POST", "/api/v1/login", d);
      route();
    }));
}

// ---- the conversation sidebar ------------------------------------------

async function sidebar(current, slot) {
  const [agents, settings] = await Promise.all([api("GET", "/api/v1/agents"), api("GET", "/api/v1/settings")]);
  const owner = state.me.role === "owner";
  // The agents this box can run, those it cannot yet (and why), and for
  // a member those the owner has not given them.
  const allowed = a => owner || settings.member_agents.includes(a.name);
  const pick = el("select", { id: "new-agent", "aria-label": "Agent for a new conversation" },
    agents.agents.map(a => el("option", { value: a.name, disabled: a.available && allowed(a) ? null : "", title: a.note || "",
      text: !a.available ? `${a.label} (not installed)` : !allowed(a) ? `${a.label} (owner only)` : a.label })));
  const firstUsable = agents.agents.find(a => a.available && allowed(a));
  if (firstUsable) pick.value = firstUsable.name;
  const why = el("p", { class: "muted small", id: "new-agent-note" });
  const explain = () => { const a = agents.agents.find(x => x.name === pick.value); why.textContent = a ? a.note || "" : ""; };
  pick.onchange = explain;
  explain();
  const search = el("input", { type: "search", id: "conv-search", placeholder: "Search conversations", "aria-label": "Search conversations by title" });
  const list = el("ul", { class: "conv-list" });
  let all = [];
  function render() {
    const q = search.value.trim().toLowerCase();
    const shown = all.filter(s => !q || s.title.toLowerCase().includes(q));
    list.replaceChildren(...shown.map(s => el("li", {}, el("a", { href: "#/c/" + s.id, "aria-current": s.id === current ? "page" : null, text: s.title }))));
    if (!all.length) list.append(el("li", { class: "muted small", text: "No conversations yet." }));
    else if (!shown.length) list.append(el("li", { class: "muted small", text: "No title matches." }));
  }
  search.addEventListener("input", render);
  async function load() { all = await api("GET", "/api/v1/sessions"); render(); }
  await load();
  const nav = el("nav", { class: "convs", id: "sidebar", "aria-label": "Conversations" },
    el("button", { type: "button", class: "small narrow-only close-side", text: "Close", onclick: () => {
      const layout = nav.closest(".layout");
      if (layout) layout.classList.remove("side-open");
      document.querySelector('button[aria-controls="sidebar"]')?.setAttribute("aria-expanded", "false");
    } }),
    el("button", { type: "button", class: "primary wide", onclick: guard(slot, async () => {
      const s = await api("POST", "/api/v1/sessions", { agent: pick.value });
      location.hash = "#/c/" + s.id;
    }), text: "New conversation" }),
    el("label", { class: "small" }, "Agent", pick), why, search, list,
    el("p", { class: "muted small shared", text: "Every conversation on this box is shared with everyone who can sign in to it." }));
  return { nav, load, list: () => all };
}

async function showConversations() {
  const gen = state.gen;
  const slot = errorSlot();
  const side = await sidebar("", slot);
  if (gen !== state.gen) return;
  if (side.list().length) { location.hash = "#/c/" + side.list()[0].id; return; }
  document.body.classList.add("chat");
  main(gen, el("div", { class: "layout" }, side.nav, el("section", { class: "chatcol", "aria-label": "Thread" }, slot.node,
    el("div", { class: "empty" }, el("h1", { text: "No conversations yet" }),
      el("p", { text: "Pick an agent and start one. It runs commands on this box; with a conversation's device toggles on, it can also drive a paired computer's browser or screen." })))));
  state.onBox = e => { if (e.type === "sessions.changed" || e.type === "reconnected") route(); };
}

// ---- a conversation -------------------------------------------------

async function showConversation(id) {
  const gen = state.gen;
  const slot = errorSlot();
  const [side, sess, devices] = await Promise.all([sidebar(id, slot), api("GET", "/api/v1/sessions/" + id), api("GET", "/api/v1/devices")]);
  document.body.classList.add("chat");
  const thread = el("ol", { class: "events", "aria-label": "Conversation", tabindex: "0" });
  const title = el("h1", { id: "conv-title", text: sess.title });
  const head = el("div", { class: "thread-head" });
  const renameBtn = el("button", { type: "button", class: "small", text: "Rename", onclick: () => {
    // Renamed in place: the title becomes a field until saved.
    const field = el("input", { id: "rename", value: title.textContent, maxlength: 200, required: true, "aria-label": "Title" });
    const editor = el("form", { class: "rename" }, field, el("button", { type: "submit", class: "small primary", text: "Save" }),
      el("button", { type: "button", class: "small", text: "Cancel", onclick: () => editor.replaceWith(title) }));
    editor.addEventListener("submit", guard(slot, async ev => {
      ev.preventDefault();
      const s = await api("PATCH", "/api/v1/sessions/" + id, { title: field.value.trim() });
      title.textContent = s.title;
      editor.replaceWith(title);
    }));
    title.replaceWith(editor);
    field.focus();
    field.select();
  } });
  const deleteBtn = el("button", { type: "button", class: "small danger", text: "Delete", onclick: guard(slot, async () => {
    if (!confirm(`Delete "${title.textContent}"? Its work stops, its device access ends and its pages are unpublished. This cannot be undone.`)) return;
    await api("DELETE", "/api/v1/sessions/" + id);
    location.hash = "#/";
  }) });
  const killBtn = el("button", { type: "button", class: "small danger", text: "Stop everything", title: "Stop the turn, every job and device action in this conversation",
    onclick: guard(slot, async () => { if (confirm("Stop all work in this conversation?")) await api("POST", `/api/v1/sessions/${id}/kill`); }) });
  const sideBtn = el("button", { type: "button", class: "small narrow-only", "aria-controls": "sidebar", "aria-expanded": "false", "aria-label": "Conversations", text: "☰" });
  const focusBtn = el("button", { type: "button", class: "small focus-toggle", "aria-controls": "focus", "aria-expanded": "false", text: "Focus" });
  // On a phone the conversation's own actions fold behind one button.
  const moreBtn = el("button", { type: "button", class: "small narrow-only", "aria-controls": "conv-actions", "aria-expanded": "false", "aria-label": "More actions", text: "⋯" });
  const actions = el("div", { class: "actions", id: "conv-actions" }, renameBtn, deleteBtn, killBtn);
  moreBtn.addEventListener("click", () => {
    const open = !head.classList.contains("actions-open");
    head.classList.toggle("actions-open", open);
    moreBtn.setAttribute("aria-expanded", String(open));
  });
  head.append(sideBtn, title, focusBtn, moreBtn, actions);

  const stopBtn = el("button", { type: "button", class: "danger", id: "stop", hidden: true, text: "Stop" });
  const nudgeBtn = el("button", { type: "button", class: "amber", id: "nudge", hidden: true, text: "Nudge" });
  const example = devices.length ? `open https://example.com on ${devices[0].name}` : "list the files in my home directory";
  const input = el("textarea", { id: "message", rows: 2, maxlength: 65536, placeholder: `Message the agent (try: ${example})`, "aria-label": "Message" });
  const send = el("form", { class: "composer" }, input, stopBtn, nudgeBtn, el("button", { type: "submit", class: "primary", text: "Send" }));
  send.addEventListener("submit", async ev => {
    ev.preventDefault();
    if (!input.value.trim()) return;
    try { await api("POST", `/api/v1/sessions/${id}/messages`, { text: input.value }); input.value = ""; } catch (e) { slot.show(e.message); }
  });
  input.addEventListener("keydown", ev => { if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); send.requestSubmit(); } });
  const banner = el("p", { class: "banner", role: "status", hidden: !sess.budget.startsWith("no memory"), text: sess.budget });
  const toggles = deviceToggles(id, devices, sess.grants, slot);
  const focus = focusPane(id, devices, toggles);
  const jump = el("button", { type: "button", class: "small jump", hidden: true, text: "↓ Latest", onclick: () => { thread.scrollTop = thread.scrollHeight; } });
  const hint = el("li", { class: "hint muted" }, el("p", { text: `Nothing here yet. Ask the agent for something, like "${example}".` }),
    devices.length ? el("p", { text: "It can act on a computer only while that computer's toggles above are on." }) : null);
  thread.append(hint);
  const chat = el("section", { class: "chatcol", "aria-label": "Thread" }, head, slot.node, banner, toggles.node, el("div", { class: "scroller" }, thread, jump), send);
  const layout = el("div", { class: "layout" }, side.nav, chat, focus.node);
  main(gen, layout);
  const drawer = (btn, cls) => btn.addEventListener("click", () => {
    const open = !layout.classList.contains(cls);
    layout.classList.toggle(cls, open);
    btn.setAttribute("aria-expanded", String(open));
  });
  drawer(sideBtn, "side-open");
  drawer(focusBtn, "focus-open");
  focus.onClose(() => { layout.classList.remove("focus-open"); focusBtn.setAttribute("aria-expanded", "false"); });

  // The thread stays at its end only while the reader is there: where they
  // are is read before anything new is drawn (not from the last scroll
  // event, which may come a frame later).
  const atEndNow = () => thread.scrollHeight - thread.scrollTop - thread.clientHeight < 48;
  thread.addEventListener("scroll", () => { if (atEndNow()) jump.hidden = true; });
  const follow = atEnd => { if (atEnd) thread.scrollTop = thread.scrollHeight; else jump.hidden = false; };

  const turns = {}, jobs = {}, confirms = {};
  let running = null, lastTurn = null;
  function turnBox(tid) {
    if (!turns[tid]) {
      hint.remove();
      const status = el("span", { class: "badge", text: "running" });
      const summary = el("summary", {});
      const steps = el("ol", { class: "steps" });
      const details = el("details", { class: "steps-box", hidden: true }, summary, steps);
      const body = el("div", { class: "body" });
      // The agent's words as they come (its stdout), until its reply
      // arrives as a message and takes their place.
      const words = el("pre", { class: "words" });
      const li = el("li", { class: "msg agent", "data-turn": tid }, el("div", { class: "who" }, el("span", { text: "Agent" }), " ", status), details, body, words);
      turns[tid] = { li, status, summary, steps, details, body, words, n: 0 };
      thread.append(li);
    }
    lastTurn = tid;
    return turns[tid];
  }
  // step adds one tool call or device action to its turn's steps.
  function step(tid, text, kind) {
    const t = turnBox(tid);
    t.n++;
    t.steps.append(el("li", { class: "step " + (kind || "") }, text));
    t.details.hidden = false;
    t.summary.textContent = `${t.n} step${t.n === 1 ? "" : "s"} · ${text}`;
    // What went wrong is seen without a click.
    if (kind === "refused" || kind === "failed" || kind === "declined" || kind === "waiting") t.details.open = true;
  }
  function setRunning(tid, st) {
    running = (st === "running" || st === "stalled") ? tid : (running === tid ? null : running);
    stopBtn.hidden = !running;
    nudgeBtn.hidden = !(running && st === "stalled");
    stopBtn.onclick = () => api("POST", `/api/v1/sessions/${id}/turns/${running}/cancel`).catch(e => slot.show(e.message));
    nudgeBtn.onclick = () => api("POST", `/api/v1/sessions/${id}/turns/${running}/nudge`).catch(e => slot.show(e.message));
  }
  // place puts a card in its turn's message (else the latest turn's, else
  // a line of its own).
  function place(tid, node) {
    const t = turns[tid] || turns[lastTurn];
    if (t) t.body.append(node); else thread.append(el("li", {}, node));
  }
  function jobCard(j, tid) {
    let c = jobs[j.id];
    if (!c) {
      const status = el("span", { class: "badge" }), elapsed = el("span", { class: "muted elapsed" });
      const stop = el("button", { type: "button", class: "small danger", text: "Stop", onclick: () => api("POST", `/api/v1/sessions/${id}/jobs/${j.id}/stop`).catch(e => slot.show(e.message)) });
      const log = el("pre", { class: "output" }), preview = el("a", { target: "_blank", rel: "noopener noreferrer", hidden: true, text: "Preview" });
      const details = el("details", {}, el("summary", { text: "Log" }), log);
      c = jobs[j.id] = { li: el("div", { class: "card run", "data-job": j.id }, el("div", {}, el("strong", { text: "Run " }), el("code", { text: j.command }), " ", status, " ", elapsed, " ", stop, " ", preview), el("div", { class: "muted small", text: "in " + j.cwd }), details), status, elapsed, stop, log, preview, started: Date.parse(j.started) };
      place(tid, c.li);
    }
    c.status.textContent = j.status + (j.exit_code !== undefined && j.exit_code !== null && j.status !== "running" ? " (" + j.exit_code + ")" : "") + (j.signal ? " (" + j.signal + ")" : "");
    c.status.className = "badge " + j.status;
    c.stop.hidden = j.status !== "running";
    clearInterval(c.tick);
    if (j.status === "running" && c.started) {
      // A running job's time goes on between its events.
      const show = () => { c.elapsed.textContent = Math.max(0, (Date.now() - c.started) / 1000).toFixed(0) + " s"; };
      show();
      c.tick = setInterval(show, 1000);
      state.timers.push(c.tick);
    } else {
      c.elapsed.textContent = j.elapsed_ms !== undefined ? (j.elapsed_ms / 1000).toFixed(1) + " s" : "";
    }
    if (j.preview) { c.preview.href = j.preview; c.preview.hidden = false; }
    return c;
  }
  function confirmCard(c, tid) {
    if (confirms[c.id]) return confirms[c.id];
    const answer = a => api("POST", `/api/v1/sessions/${id}/confirmations/${c.id}`, { answer: a }).then(() => input.focus(), e => slot.show(e.message));
    const buttons = el("div", { class: "buttons" },
      el("button", { type: "button", class: "primary", onclick: () => answer("yes"), text: "Yes" }),
      el("button", { type: "button", onclick: () => answer("no"), text: "No" }),
      el("button", { type: "button", class: "danger", onclick: () => answer("cancel"), text: "Cancel" }));
    const result = el("p", { class: "result", role: "status" });
    const deadline = el("p", { class: "muted small", text: "No answer by " + new Date(c.deadline).toLocaleTimeString() + " counts as no." });
    const li = el("div", { class: "card confirm", "data-confirm": c.id, role: "group", "aria-label": "The agent asks" },
      el("p", {}, el("strong", { text: "The agent asks: " }), c.summary), c.by ? el("p", { class: "muted small", text: "For " + c.by }) : null, deadline, buttons, result);
    place(tid, li);
    return confirms[c.id] = { li, buttons, result, deadline };
  }
  function onEvent(e) {
    const d = e.data || {};
    const atEnd = atEndNow();
    switch (e.type) {
      case "message":
        if (d.role === "assistant" && e.turn) {
          const t = turnBox(e.turn);
          t.words.remove();
          t.li.append(markdown(d.text));
        } else {
          hint.remove();
          thread.append(el("li", { class: "msg " + d.role }, el("div", { class: "who", text: d.role !== "user" ? "Agent" : !d.by || d.by === state.me.name ? "You" : d.by }), el("p", { class: "plain", text: d.text })));
        }
        break;
      case "turn.state": {
        const t = turnBox(e.turn);
        t.status.textContent = d.state + (d.detail && d.detail !== d.state ? ": " + d.detail : "");
        t.status.className = "badge " + d.state;
        setRunning(e.turn, d.state);
        if (d.state !== "running" && d.state !== "stalled") toggles.turnEnded(e.turn);
        break;
      }
      case "turn.output":
        if (/^→ /.test(d.text)) step(e.turn, d.text.slice(2), "tool");
        else if (d.stream === "stderr") step(e.turn, d.text, "log");
        else turnBox(e.turn).words.append(d.text + "\n");
        break;
      case "turn.nudged": step(e.turn, "nudged", "log"); break;
      case "job.started": case "job.state": jobCard(d, e.turn); break;
      case "job.output": if (jobs[e.job]) jobs[e.job].log.append(d.text + "\n"); break;
      case "job.preview": if (jobs[e.job]) { jobs[e.job].preview.href = d.url; jobs[e.job].preview.hidden = false; } focus.addPage(d.url); break;
      case "confirm.open": confirmCard(d, e.turn); break;
      case "confirm.closed": {
        const c = confirmCard(d, e.turn);
        c.buttons.remove();
        c.deadline.remove();
        // Who answered, inside the card; nobody in time is a no.
        c.result.textContent = d.by ? `Answered ${d.answer} by ${d.by}.` : `No answer in time: ${d.answer}.`;
        c.li.classList.add("closed");
        break;
      }
      case "device.action": {
        const turn = ((d.who || "").match(/\(turn (t-[0-9a-z]+)\)/) || [])[1];
        const line = `${d.action} on ${deviceName(devices, d.device)}: ${d.outcome}${d.detail ? " (" + d.detail + ")" : ""}`;
        // An agent's action is a step of its turn; a person's own (the
        // focus pane's Refresh, the live view) is in the audit, not here.
        if ((d.who || "").startsWith("agent")) {
          if (turn || lastTurn) step(turn || lastTurn, line, d.outcome);
          toggles.acting(d.device, d, turn);
        }
        // The person at the computer answered it asking: a step of the
        // turn that waited.
        if (d.action.startsWith("consent.") && lastTurn) step(lastTurn, `${d.who}: ${d.detail}`, d.outcome);
        // Opening or reloading a page replays these: it never acts on the
        // computer itself (that is the person's click on Refresh).
        if (d.outcome === "done" && d.action.startsWith("browser.")) focus.noted(d);
        break;
      }
      // The computer waits for the person there before letting the
      // conversation act on it.
      case "device.waiting": if (lastTurn) step(lastTurn, d.text, "waiting"); break;
      case "grant.changed": toggles.changed(d); focus.grantsChanged(); break;
      case "session.warning": banner.hidden = false; banner.textContent = d.message; break;
      case "session.killed": thread.append(el("li", { class: "notice-line failed", text: "All work in this conversation was stopped." })); break;
      // The sidebar follows from the box's stream (sessions.changed).
      case "session.renamed": title.textContent = d.title; break;
    }
    follow(atEnd);
  }
  // The rest of the box: devices going on or off line, conversations
  // made, renamed or deleted elsewhere.
  state.onBox = async e => {
    if (e.type === "sessions.changed" || e.type === "reconnected") {
      const read = await side.load().then(() => true, () => false);
      if (read && !side.list().some(s => s.id === id)) {
        slot.show("This conversation was deleted.");
        send.querySelectorAll("textarea, button").forEach(b => b.disabled = true);
      }
    }
    if (e.type === "devices.changed" || e.type === "reconnected") {
      try { toggles.devicesChanged(await api("GET", "/api/v1/devices")); } catch (err) { slot.show(err.message); }
    }
  };
  let last = 0;
  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/sessions/${id}/events?since=${last}`);
    state.ws = ws;
    ws.onmessage = m => { const e = JSON.parse(m.data); if (e.seq <= last) return; last = e.seq; onEvent(e); };
    ws.onclose = () => { if (state.ws === ws) setTimeout(() => { if (state.ws === ws) connect(); }, 1000); };
  }
  connect();
  input.focus();
}

function deviceName(devices, id) {
  const d = devices.find(x => x.id === id);
  return d ? d.name : id;
}

// capability says whether a computer offers kind, and why not.
function capability(d, kind) {
  const c = d.capabilities && d.capabilities[kind];
  if (!c) return { available: true };
  return c;
}

function deviceToggles(sid, devices, grants, slot) {
  const node = el("fieldset", { class: "toggles" }, el("legend", { text: "Device control in this conversation" }));
  const rows = {};
  const current = {};
  for (const g of grants) current[g.device] = g;
  if (!devices.length) node.append(el("p", { class: "muted small" }, "No paired computers. ", el("a", { href: "#/devices", text: "Pair one" })));
  function row(d) {
    const g = current[d.id] || {};
    const who = el("span", { class: "muted small who-set" });
    const indicator = el("span", { class: "acting", role: "status", hidden: true });
    const online = el("span", { class: d.online ? "online" : "offline", text: d.online ? "online" : "offline" });
    const setWho = gr => { who.textContent = (gr.browser || gr.desktop) && gr.by ? `on, by ${gr.by} at ${new Date(gr.at).toLocaleTimeString()}` : "off"; };
    setWho(g);
    const box = (kind, label) => {
      const cap = capability(d, kind);
      const input = el("input", { type: "checkbox", "data-device": d.id, "data-toggle": kind, checked: !!g[kind], disabled: cap.available ? null : "" });
      input.addEventListener("change", async () => {
        try {
          const gr = await api("PUT", `/api/v1/sessions/${sid}/devices/${d.id}/access`, { [kind]: input.checked });
          current[d.id] = gr;
          setWho(gr.browser || gr.desktop ? gr : {});
        } catch (e) { input.checked = !input.checked; slot.show(e.message); }
      });
      // A capability the computer lacks is shown as such, with why.
      return el("label", { class: "toggle" + (cap.available ? "" : " unavailable"), title: cap.available ? "" : cap.reason || "" }, input, label,
        cap.available ? null : el("span", { class: "muted small reason", text: ` (unavailable: ${cap.reason || "not offered"})` }));
    };
    const stopNow = el("button", { type: "button", class: "small danger", text: "Stop control", onclick: guard(slot, async () => {
      const gr = await api("PUT", `/api/v1/sessions/${sid}/devices/${d.id}/access`, { browser: false, desktop: false });
      current[d.id] = gr;
      node.querySelectorAll(`input[data-device="${d.id}"]`).forEach(i => i.checked = false);
      indicator.hidden = true; setWho({});
    }) });
    indicator.append("Agent acting on this computer ", stopNow);
    const line = el("div", { class: "device-row", "data-device-row": d.id }, el("strong", { text: d.name }), online,
      box("browser", "Browser access"), box("desktop", "Desktop access"), who, indicator);
    rows[d.id] = { indicator, setWho, online, line };
    return line;
  }
  for (const d of devices) node.append(row(d));
  return {
    node,
    grant(device) { return current[device] || {}; },
    // Shown while the agent's turn that acted runs (an agent action outside
    // a turn: for 15 s).
    acting(device, d, turn) {
      const r = rows[device];
      if (!r || d.outcome !== "done") return;
      r.indicator.hidden = false;
      r.turn = turn || null;
      clearTimeout(r.timer);
      if (!turn) { r.timer = setTimeout(() => { r.indicator.hidden = true; }, 15000); state.timers.push(r.timer); }
    },
    turnEnded(turn) {
      for (const r of Object.values(rows)) {
        if (r.turn === turn) { r.indicator.hidden = true; r.turn = null; }
      }
    },
    // Someone (here or on another page) changed a toggle: show the truth.
    changed(g) {
      current[g.device] = g;
      const r = rows[g.device];
      if (!r) return;
      node.querySelectorAll(`input[data-device="${g.device}"]`).forEach(i => { i.checked = !!g[i.dataset.toggle]; });
      r.setWho(g.browser || g.desktop ? g : {});
      if (!g.browser && !g.desktop) r.indicator.hidden = true;
    },
    // A computer came or went, or said what it offers.
    devicesChanged(list) {
      for (const d of list) {
        const r = rows[d.id];
        if (!r) {
          node.querySelector("p.muted")?.remove();
          devices.push(d);
          node.append(row(d));
          continue;
        }
        Object.assign(devices.find(x => x.id === d.id), d);
        r.online.className = d.online ? "online" : "offline";
        r.online.textContent = d.online ? "online" : "offline";
        for (const kind of ["browser", "desktop"]) {
          const i = r.line.querySelector(`input[data-toggle="${kind}"]`);
          const cap = capability(d, kind);
          i.disabled = !cap.available;
          const lab = i.closest("label");
          lab.classList.toggle("unavailable", !cap.available);
          lab.title = cap.available ? "" : cap.reason || "";
          lab.querySelector(".reason")?.remove();
          if (!cap.available) lab.append(el("span", { class: "muted small reason", text: ` (unavailable: ${cap.reason || "not offered"})` }));
        }
      }
      for (const id of Object.keys(rows)) {
        if (!list.some(d => d.id === id)) { rows[id].line.remove(); delete rows[id]; }
      }
    },
  };
}

// ---- the focus pane: live screen, screenshots, pages ------------------

function stopLive() {
  if (state.live) { state.live.onclose = null; state.live.close(); state.live = null; }
}

// liveViewer draws the live screen's updates onto canvas, in order: a
// whole frame, then what changed (regions copied from elsewhere on the
// picture, a scroll; JPEG tiles drawn over it). The wire form is
// devicectl.LiveUpdate's. An update that does not follow the last one
// drawn is dropped and a whole frame asked for (askKey). The pointer, which
// the screen's pictures do not show, is placed over the canvas.
function liveViewer(canvas, pointer, askKey) {
  const ctx = canvas.getContext("2d");
  let last = null, chain = Promise.resolve();
  function parse(buf) {
    const d = new DataView(buf);
    if (buf.byteLength < 15 || d.getUint32(0) !== 0x4c4b5531) return null; // "LKU1"
    const flags = d.getUint8(4);
    const u = { key: (flags & 1) === 1, width: d.getUint16(5), height: d.getUint16(7), seq: d.getUint32(9), ops: [] };
    let at = 15;
    if (flags & 2) { u.pointer = { x: d.getUint16(at), y: d.getUint16(at + 2) }; at += 4; }
    for (let n = d.getUint16(13); n > 0; n--) {
      const op = { copy: d.getUint8(at) === 1, x: d.getUint16(at + 1), y: d.getUint16(at + 3), w: d.getUint16(at + 5), h: d.getUint16(at + 7) };
      at += 9;
      if (op.copy) { op.sx = d.getUint16(at); op.sy = d.getUint16(at + 2); at += 4; }
      else { const len = d.getUint32(at); op.jpeg = new Blob([new Uint8Array(buf, at + 4, len)], { type: "image/jpeg" }); at += 4 + len; }
      u.ops.push(op);
    }
    return u;
  }
  async function draw(u) {
    if (u.key) {
      if (canvas.width !== u.width || canvas.height !== u.height) { canvas.width = u.width; canvas.height = u.height; }
    } else if (last === null || u.seq !== last + 1) {
      last = null; askKey(); return;
    }
    // Tiles decode in parallel, then all of the update draws at once.
    const bitmaps = await Promise.all(u.ops.map(op => op.copy ? null : createImageBitmap(op.jpeg)));
    u.ops.forEach((op, i) => {
      if (op.copy) ctx.drawImage(canvas, op.sx, op.sy, op.w, op.h, op.x, op.y, op.w, op.h);
      else { ctx.drawImage(bitmaps[i], op.x, op.y); bitmaps[i].close(); }
    });
    if (u.pointer) {
      pointer.style.left = `${(100 * u.pointer.x) / u.width}%`;
      pointer.style.top = `${(100 * u.pointer.y) / u.height}%`;
      pointer.hidden = false;
    }
    last = u.seq;
  }
  return {
    add(buf) {
      const u = parse(buf);
      if (!u) return;
      chain = chain.then(() => draw(u)).catch(() => { last = null; askKey(); });
    },
  };
}

function focusPane(sid, devices, toggles) {
  const img = el("img", { id: "focus-img", alt: "What the agent sees", hidden: true });
  // The live screen: updates drawn onto a canvas (see liveViewer), the
  // pointer over it.
  const canvas = el("canvas", { id: "focus-live", "aria-label": "Live view of the computer", role: "img" });
  const pointer = el("span", { class: "pointer", hidden: true });
  const liveBox = el("div", { class: "live", hidden: true }, canvas, pointer);
  const caption = el("p", { class: "muted small", id: "focus-caption", text: "Screenshots and the live screen of the computer being driven show here." });
  const pages = el("ul", { class: "pages" });
  const pick = el("select", { "aria-label": "Computer" }, devices.map(d => el("option", { value: d.id, text: d.name })));
  let url = null, closeFn = () => {};
  const show = (blob, text) => {
    if (url) URL.revokeObjectURL(url);
    url = URL.createObjectURL(blob);
    img.src = url; img.hidden = false; liveBox.hidden = true; caption.textContent = text;
  };
  async function refresh() {
    const device = pick.value;
    if (!device) return;
    try {
      const r = await api("POST", `/api/v1/sessions/${sid}/devices/${device}/actions`, { action: "browser.screenshot", args: { max_edge: 1024, format: "jpeg" } });
      const bin = Uint8Array.from(atob(r.data_base64), c => c.charCodeAt(0));
      show(new Blob([bin], { type: "image/jpeg" }), `${r.result.title || r.result.url} on ${deviceName(devices, device)}`);
    } catch (e) { caption.textContent = e.message; }
  }
  function live(source) {
    stopLive();
    const device = pick.value;
    if (!device) return;
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/sessions/${sid}/devices/${device}/live?source=${source}&fps=${source === "screen" ? 30 : 10}`);
    ws.binaryType = "arraybuffer";
    const view = liveViewer(canvas, pointer, () => ws.readyState === WebSocket.OPEN && ws.send("key"));
    ws.onmessage = m => {
      view.add(m.data);
      img.hidden = true; liveBox.hidden = false;
      caption.textContent = `live ${source} of ${deviceName(devices, device)}`;
    };
    ws.onclose = ev => { caption.textContent = "live view ended" + (ev.reason ? ": " + ev.reason : ""); };
    state.live = ws;
  }
  const refreshBtn = el("button", { type: "button", onclick: refresh, text: "Refresh" });
  const liveTab = el("button", { type: "button", onclick: () => live("browser"), text: "Live tab" });
  const liveScreen = el("button", { type: "button", onclick: () => live("screen"), text: "Live screen" });
  // The pane asks the computer only on a click, and only with the
  // conversation's toggle for it on.
  function grantsChanged() {
    const g = toggles.grant(pick.value);
    for (const [b, kind] of [[refreshBtn, "browser"], [liveTab, "browser"], [liveScreen, "desktop"]]) {
      b.disabled = !pick.value || !g[kind];
      b.title = b.disabled ? `Turn ${kind} access on for this computer first` : "";
    }
  }
  pick.addEventListener("change", grantsChanged);
  const tabs = el("div", { class: "buttons", role: "toolbar", "aria-label": "Focus pane" }, refreshBtn, liveTab, liveScreen,
    el("button", { type: "button", onclick: stopLive, text: "Pause" }),
    el("button", { type: "button", onclick: () => { if (url) window.open(url, "_blank", "noopener"); }, text: "Pop out" }),
    el("button", { type: "button", onclick: () => { const v = liveBox.hidden ? img : liveBox; if (v.requestFullscreen) v.requestFullscreen(); }, text: "Fullscreen" }));
  const close = el("button", { type: "button", class: "small narrow-only", text: "Close", onclick: () => closeFn() });
  const node = el("aside", { class: "focus", id: "focus", "aria-label": "Focus pane" }, el("div", { class: "focus-head" }, el("h2", { text: "Focus" }), close),
    devices.length ? pick : el("p", { class: "muted small", text: "No paired computers." }), tabs, img, liveBox, caption, el("h3", { text: "Pages" }), pages);
  grantsChanged();
  return {
    node, grantsChanged,
    onClose(fn) { closeFn = fn; },
    // An agent's browser action: said, not looked at (a look is an action
    // of its own, the person's).
    noted(d) {
      if (pick.value !== d.device) return;
      caption.textContent = `The agent ran ${d.action} on ${deviceName(devices, d.device)}. Refresh to look.`;
    },
    addPage(u) { pages.append(el("li", {}, el("a", { href: u, target: "_blank", rel: "noopener noreferrer", text: u }))); },
  };
}

// ---- devices and pairing ----------------------------------------------

function capabilityText(d) {
  if (!d.capabilities) return "";
  return Object.entries(d.capabilities).map(([k, c]) => c.available ? `${k}: yes` : `${k}: no (${c.reason || "not offered"})`).join(" · ");
}

async function showDevices() {
  const gen = state.gen;
  const slot = errorSlot();
  const list = el("ul", { class: "devices plain-list" });
  const owner = state.me.role === "owner";
  async function load() {
    const ds = await api("GET", "/api/v1/devices");
    list.replaceChildren(...ds.map(d => el("li", { class: "card", "data-device": d.id },
      el("div", { class: "row" }, el("strong", { text: d.name }), " ", el("span", { class: d.online ? "online" : "offline", text: d.online ? "online" : "offline" }),
        d.online && d.path ? el("span", { class: "muted small path", text: ` · ${d.path === "direct-tcp" ? "direct (tcp)" : d.path}` }) : null,
        d.rtt_ms !== undefined && d.online ? el("span", { class: "muted small", text: ` · ${d.rtt_ms.toFixed(1)} ms` }) : null,
        owner ? el("button", { type: "button", class: "small danger push", text: "Revoke", onclick: guard(slot, async () => {
          if (!confirm(`Unpair ${d.name}? Its link closes now and it cannot connect again.`)) return;
          await api("DELETE", "/api/v1/devices/" + d.id);
        }) }) : null),
      el("div", { class: "muted small", text: `${d.platform || "platform not known yet"} · last seen ${d.last_seen ? new Date(d.last_seen).toLocaleString() : "never"}` }),
      d.capabilities ? el("div", { class: "muted small caps", text: capabilityText(d) }) : null)));
    if (!ds.length) list.append(el("li", { class: "muted", text: "No paired computers yet." }));
  }
  // The pairing window is the box's: every Devices page shows the same
  // code, a new one replaces it everywhere, a used one goes.
  const pairBox = el("div", { class: "card", id: "pairing", "aria-live": "polite" });
  let expiry = null;
  function showPairing(v) {
    clearTimeout(expiry);
    pairBox.replaceChildren();
    if (v.paired) pairBox.append(el("p", { class: "ok", id: "paired", text: `Paired: ${v.paired}` }));
    if (v.locked) pairBox.append(el("p", { class: "error-text", text: "Pairing is locked after too many wrong codes: run `lowkey pair-code` on the box to open it again." }));
    if (!v.open) {
      if (!v.paired) pairBox.append(el("p", { class: "muted", text: "No pairing code is open. A code lets one computer pair within 5 minutes." }));
      return;
    }
    const cmd = `lowkey-companion pair ${v.hub ? "--hub " + v.hub + " " : ""}--code ${v.code}`;
    const command = el("pre", { id: "pair-command", text: cmd });
    pairBox.append(el("p", {}, "Pairing code: ", el("strong", { id: "pair-code", text: v.code }), ` (valid until ${new Date(v.expires_at).toLocaleTimeString()})`),
      el("p", { text: "On the computer, run:" }), el("div", { class: "code" }, copyButton(() => cmd), command),
      el("p", { class: "muted small", id: "pair-reach", text: v.reach || "" }),
      el("p", { class: "muted small", text: "It appears below once it has paired." }));
    expiry = setTimeout(() => showPairing({ open: false }), Math.max(0, Date.parse(v.expires_at) - Date.now()));
    state.timers.push(expiry);
  }
  const pairBtn = owner ? el("button", { type: "button", class: "primary", text: "Pair a computer", onclick: guard(slot, async () => {
    const c = await api("POST", "/api/v1/pairing/codes");
    showPairing({ open: true, code: c.code, expires_at: c.expires_at, hub: c.hub, reach: c.reach });
  }) }) : el("p", { class: "muted", text: "Only the owner pairs and revokes computers." });
  main(gen, el("section", { class: "page" }, el("h1", { text: "Devices" }), slot.node, pairBtn, owner ? pairBox : null, list));
  await load();
  if (owner) showPairing(await api("GET", "/api/v1/pairing"));
  state.onBox = async e => {
    try {
      if (e.type === "pairing.changed") showPairing(e.data);
      if (e.type === "devices.changed" || e.type === "reconnected") await load();
      if (e.type === "reconnected" && owner) showPairing(await api("GET", "/api/v1/pairing"));
    } catch (err) { slot.show(err.message); }
  };
}

// ---- audit ----------------------------------------------------------------

async function showAudit() {
  const gen = state.gen;
  const slot = errorSlot();
  const [devices, convs] = await Promise.all([api("GET", "/api/v1/devices"), api("GET", "/api/v1/sessions")]);
  const dev = el("select", { name: "device", "aria-label": "Device" }, el("option", { value: "", text: "All devices" }), devices.map(d => el("option", { value: d.id, text: d.name })));
  const conv = el("select", { name: "session", "aria-label": "Conversation" }, el("option", { value: "", text: "All conversations" }), convs.map(s => el("option", { value: s.id, text: s.title })));
  const outcome = el("select", { name: "outcome", "aria-label": "Outcome" }, ["", "done", "refused", "declined", "failed", "cancelled"].map(o => el("option", { value: o, text: o || "Any outcome" })));
  const body = el("tbody");
  const exportLink = el("a", { text: "Export (JSON lines)", download: "lowkey-audit.jsonl" });
  const titleOf = id => { const s = convs.find(x => x.id === id); return s ? s.title : id || "—"; };
  const cols = ["When", "Conversation", "Who", "Device", "Action", "Outcome", "Arguments"];
  const cell = (i, ...kids) => el("td", { "data-label": cols[i] }, ...kids);
  async function load() {
    const q = `device=${encodeURIComponent(dev.value)}&session=${encodeURIComponent(conv.value)}`;
    exportLink.href = "/api/v1/audit?format=jsonl&" + q;
    let recs = await api("GET", "/api/v1/audit?" + q);
    if (outcome.value) recs = recs.filter(r => r.outcome === outcome.value);
    body.replaceChildren(...recs.reverse().map(r => el("tr", { class: "outcome-" + r.outcome },
      cell(0, new Date(r.time).toLocaleString()),
      cell(1, r.conversation ? el("a", { href: "#/c/" + r.conversation, text: titleOf(r.conversation) }) : "—"),
      cell(2, r.who), cell(3, deviceName(devices, r.device)), cell(4, el("code", { text: r.action })),
      cell(5, el("strong", { text: r.outcome }), r.answer ? ` (answered ${r.answer})` : "", r.detail ? el("div", { class: "small reason", text: r.detail }) : null),
      cell(6, r.args ? el("code", { class: "args", text: JSON.stringify(r.args) }) : ""))));
    if (!recs.length) body.append(el("tr", {}, el("td", { colspan: cols.length, class: "muted", text: "No device actions yet." })));
  }
  dev.onchange = conv.onchange = outcome.onchange = guard(slot, load);
  main(gen, el("section", { class: "page wide" }, el("h1", { text: "Audit" }), slot.node,
    el("p", { class: "muted small", text: "Every action on a paired computer: by an agent or by a person, refused or done." }),
    el("div", { class: "filters" }, dev, conv, outcome, exportLink),
    el("div", { class: "table-wrap" }, el("table", { class: "audit" }, el("thead", {}, el("tr", {}, cols.map(h => el("th", { scope: "col", text: h })))), body))));
  await load();
}

// ---- people -------------------------------------------------------------

async function showPeople() {
  const gen = state.gen;
  if (state.me.role !== "owner") {
    main(gen, el("section", { class: "page" }, el("h1", { text: "People" }),
      el("p", { text: "Only the box's owner adds and removes people." }),
      el("p", { class: "muted", text: "Every conversation on this box is shared with everyone who can sign in to it." })));
    return;
  }
  const slot = errorSlot();
  const list = el("ul", { class: "plain-list" });
  async function load() {
    const us = await api("GET", "/api/v1/users");
    list.replaceChildren(...us.map(u => el("li", { class: "card row" }, el("strong", { text: u.name }), " ", el("span", { class: "muted", text: u.role }),
      u.role !== "owner" ? el("button", { type: "button", class: "small danger push", text: "Remove", onclick: guard(slot, async () => {
        if (!confirm(`Remove ${u.name}? They are signed out everywhere at once.`)) return;
        await api("DELETE", "/api/v1/users/" + encodeURIComponent(u.name));
      }) }) : null)));
  }
  const add = form("Add someone", [["name", "Name", "text", nameRule], ["password", "Their password (10 characters or more)", "password", newPassword]], "Add",
    async d => { await api("POST", "/api/v1/users", d); add.reset(); },
    "Everyone on this box can drive its agents: they run commands on the box and, where a conversation's toggles are on, act on paired computers.");
  main(gen, el("section", { class: "page" }, el("h1", { text: "People" }), slot.node, list, add));
  await load();
  state.onBox = e => { if (e.type === "users.changed" || e.type === "reconnected") load().catch(err => slot.show(err.message)); };
}

// ---- the owner's settings -------------------------------------------------

async function showSettings() {
  const gen = state.gen;
  if (state.me.role !== "owner") {
    main(gen, el("section", { class: "page" }, el("h1", { text: "Settings" }), el("p", { text: "Only the box's owner changes its settings." })));
    return;
  }
  const slot = errorSlot();
  const agentsBox = el("fieldset", { class: "card" }, el("legend", { text: "Agents members may choose" }));
  const instr = el("textarea", { id: "instructions", rows: 10, maxlength: 65536, "aria-label": "Standing instructions to agents" });
  const instrNote = el("p", { class: "muted small" });
  const secretList = el("ul", { class: "plain-list", id: "secrets" });
  const forPick = el("select", { name: "for", "aria-label": "For which agents" });
  let settings, agents, drawn = "";
  async function load() {
    [settings, agents] = await Promise.all([api("GET", "/api/v1/settings"), api("GET", "/api/v1/agents")]);
    const secrets = await api("GET", "/api/v1/secrets");
    // Redrawn only when something changed: a button a person is about to
    // press stays where it is.
    const now = JSON.stringify([settings, agents, secrets]);
    if (now === drawn) return;
    drawn = now;
    agentsBox.replaceChildren(agentsBox.firstChild, ...agents.agents.filter(a => !a.name.startsWith("exec")).map(a =>
      el("label", { class: "toggle" }, el("input", { type: "checkbox", name: "member-agent", value: a.name, checked: settings.member_agents.includes(a.name) }), a.label)),
      el("p", { class: "muted small", text: "The owner may also run any program as an agent (exec:); members never." }));
    if (document.activeElement !== instr) instr.value = settings.instructions;
    instr.placeholder = settings.default_instructions;
    instrNote.textContent = settings.instructions ? "Your instructions replace the box's own." : "Empty: agents get the box's own instructions (shown greyed).";
    forPick.replaceChildren(el("option", { value: "all", text: "All agents" }), ...agents.agents.map(a => el("option", { value: a.name, text: a.label })));
    secretList.replaceChildren(...secrets.map(s => el("li", { class: "card row" }, el("code", { text: s.name }), el("span", { class: "muted small", text: s.for === "all" ? "for all agents" : "for " + s.for }),
      el("button", { type: "button", class: "small danger push", text: "Remove", onclick: guard(slot, async () => {
        if (!confirm(`Remove the secret ${s.name}? Agents no longer get it.`)) return;
        await api("DELETE", "/api/v1/secrets/" + encodeURIComponent(s.name));
      }) }))));
    if (!secrets.length) secretList.append(el("li", { class: "muted", text: "No secrets stored." }));
  }
  agentsBox.addEventListener("change", guard(slot, async () => {
    const chosen = [...agentsBox.querySelectorAll('input[name="member-agent"]:checked')].map(i => i.value);
    settings = await api("PUT", "/api/v1/settings", { member_agents: chosen });
  }));
  const saveInstr = el("form", { class: "card", "aria-label": "Standing instructions" }, el("h2", { text: "Standing instructions to agents" }),
    el("p", { class: "muted small", text: "Given to every agent at the start of each turn." }), instr, instrNote,
    el("div", { class: "buttons" }, el("button", { type: "submit", class: "primary", text: "Save instructions" }),
      el("button", { type: "button", text: "Use the box's own", onclick: guard(slot, async () => { await api("PUT", "/api/v1/settings", { instructions: "" }); instr.value = ""; await load(); }) })));
  saveInstr.addEventListener("submit", guard(slot, async ev => { ev.preventDefault(); await api("PUT", "/api/v1/settings", { instructions: instr.value }); instr.blur(); await load(); }));
  const secretName = el("input", { name: "name", required: true, pattern: "[A-Za-z_][A-Za-z0-9_]{0,63}", title: "letters, digits and _, like OPENAI_API_KEY", autocomplete: "off" });
  const secretValue = el("input", { name: "value", type: "password", required: true, autocomplete: "off" });
  const addSecret = el("form", { class: "card", "aria-label": "Store a secret" }, el("h2", { text: "Secrets" }),
    el("p", { class: "muted small", text: "Credentials for agents: only their names show here; each turn gets them in a private file, never in its environment or a log." }),
    secretList, el("label", {}, "Name", secretName), el("label", {}, "Value", secretValue), el("label", {}, "For", forPick),
    el("button", { type: "submit", class: "primary", text: "Store secret" }));
  addSecret.addEventListener("submit", guard(slot, async ev => {
    ev.preventDefault();
    await api("PUT", "/api/v1/secrets/" + encodeURIComponent(secretName.value), { value: secretValue.value, for: forPick.value });
    secretName.value = ""; secretValue.value = "";
  }));
  main(gen, el("section", { class: "page" }, el("h1", { text: "Settings" }), slot.node, agentsBox, saveInstr, addSecret));
  await load();
  state.onBox = e => { if (e.type === "settings.changed" || e.type === "reconnected") load().catch(err => slot.show(err.message)); };
}

$("#signout").addEventListener("click", async () => {
  try { await api("POST", "/api/v1/logout"); } catch {}
  state.me = null;
  if (state.box) { const b = state.box; state.box = null; b.close(); }
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", route);
route();
