"use strict";
// The Lowkey web app: conversations with cards, device toggles, the focus
// pane, devices, audit and people. Plain DOM, no dependencies.

const state = { me: null, ws: null, live: null, timers: [] };
const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k.nodeType ? k : document.createTextNode(k));
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

function notice(msg, kind = "error") {
  const n = el("div", { class: "notice " + kind, role: kind === "error" ? "alert" : "status" }, msg);
  document.body.append(n);
  setTimeout(() => n.remove(), 6000);
}

function stopAll() {
  if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
  stopLive();
  state.timers.forEach(clearInterval);
  state.timers = [];
}

function main(...kids) {
  const m = $("#main");
  m.replaceChildren(...kids);
  return m;
}

async function route() {
  stopAll();
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
  const conv = h.match(/^\/c\/(.+)$/);
  if (conv) return showConversation(conv[1]);
  if (h === "/devices") return showDevices();
  if (h === "/audit") return showAudit();
  if (h === "/people") return showPeople();
  return showConversations();
}

function form(title, fields, submit, onsubmit, note) {
  const f = el("form", { class: "card narrow", "aria-label": title },
    el("h1", { text: title }), note ? el("p", { class: "muted", text: note }) : null,
    ...fields.map(([name, label, type]) => el("label", {}, label, el("input", { name, type, required: true, autocomplete: type === "password" ? "current-password" : "username" }))),
    el("button", { type: "submit", text: submit }));
  f.addEventListener("submit", async ev => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(f));
    try { await onsubmit(data); } catch (e) { notice(e.message); }
  });
  return f;
}

function showSetup(token) {
  $("#top").hidden = true;
  main(form("Create the owner", [["name", "Your name", "text"], ["password", "Password (10 characters or more)", "password"]], "Create and sign in",
    async d => {
      state.me = await api("POST", "/api/v1/setup", { token, name: d.name, password: d.password });
      location.hash = "#/";
    }, "This link works once. The owner manages people and paired computers."));
}

function showLogin() {
  $("#top").hidden = true;
  main(form("Sign in to Lowkey", [["name", "Name", "text"], ["password", "Password", "password"]], "Sign in",
    async d => {
      state.me = await api("POST", "/api/v1/login", d);
      route();
    }));
}

async function conversationList(current) {
  const [list, agents] = await Promise.all([api("GET", "/api/v1/sessions"), api("GET", "/api/v1/agents")]);
  // The agents this box can run, and those it cannot yet, with why.
  const pick = el("select", { id: "new-agent", "aria-label": "Agent for a new conversation" },
    agents.agents.map(a => el("option", { value: a.name, disabled: a.available ? null : "", title: a.note || "",
      text: a.available ? a.label : `${a.label} (not installed)` })));
  const why = el("p", { class: "muted small", id: "new-agent-note", text: agents.agents[0] ? agents.agents[0].note || "" : "" });
  pick.onchange = () => { const a = agents.agents.find(x => x.name === pick.value); why.textContent = a ? a.note || "" : ""; };
  const nav = el("nav", { class: "convs", "aria-label": "Conversations" },
    pick, why,
    el("button", { type: "button", class: "primary", onclick: async () => {
      const s = await api("POST", "/api/v1/sessions", { agent: pick.value });
      location.hash = "#/c/" + s.id;
    }, text: "New conversation" }),
    el("ul", {}, list.map(s => el("li", {}, el("a", { href: "#/c/" + s.id, "aria-current": s.id === current ? "page" : null, text: s.title })))));
  return { nav, list };
}

async function showConversations() {
  const { nav, list } = await conversationList("");
  if (list.length) { location.hash = "#/c/" + list[0].id; return; }
  main(el("div", { class: "layout" }, nav, el("section", { class: "thread" }, el("p", { class: "muted", text: "No conversations yet. Start one." }))));
}

// ---- a conversation -------------------------------------------------

async function showConversation(id) {
  const [{ nav }, sess, devices] = await Promise.all([conversationList(id), api("GET", "/api/v1/sessions/" + id), api("GET", "/api/v1/devices")]);
  const thread = el("ol", { class: "events", "aria-live": "polite", "aria-label": "Conversation" });
  const title = el("h1", { text: sess.title });
  const rename = el("button", { type: "button", class: "small", text: "Rename", onclick: async () => {
    const t = prompt("New title", sess.title);
    if (!t) return;
    const s = await api("PATCH", "/api/v1/sessions/" + id, { title: t });
    title.textContent = s.title;
  } });
  const stopBtn = el("button", { type: "button", class: "danger", id: "stop", hidden: true, text: "Stop" });
  const nudgeBtn = el("button", { type: "button", class: "amber", id: "nudge", hidden: true, text: "Nudge" });
  const killBtn = el("button", { type: "button", class: "small danger", text: "Stop everything", title: "Stop the turn, every job and device action in this conversation",
    onclick: async () => { if (confirm("Stop all work in this conversation?")) await api("POST", `/api/v1/sessions/${id}/kill`); } });
  const input = el("textarea", { id: "message", rows: 2, placeholder: "Message the agent (try: open https://example.com on my laptop)", "aria-label": "Message" });
  const send = el("form", { class: "composer" }, input, el("button", { type: "submit", text: "Send" }), stopBtn, nudgeBtn);
  send.addEventListener("submit", async ev => {
    ev.preventDefault();
    if (!input.value.trim()) return;
    try { await api("POST", `/api/v1/sessions/${id}/messages`, { text: input.value }); input.value = ""; } catch (e) { notice(e.message); }
  });
  input.addEventListener("keydown", ev => { if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); send.requestSubmit(); } });
  const banner = el("p", { class: "banner", role: "status", hidden: !sess.budget.startsWith("no memory"), text: sess.budget });
  const toggles = deviceToggles(id, devices, sess.grants);
  const focus = focusPane(id, devices);
  main(el("div", { class: "layout" }, nav,
    el("section", { class: "thread", "aria-label": "Thread" }, el("div", { class: "thread-head" }, title, rename, killBtn), banner, toggles.node, thread, send),
    focus.node));

  const turns = {}, jobs = {}, confirms = {};
  let running = null;
  function turnBox(tid) {
    if (!turns[tid]) {
      const status = el("span", { class: "badge", text: "running" });
      const out = el("pre", { class: "output" });
      // The agent's own words as they come (its stdout); they go once its
      // reply shows as a message, so the reply is not there twice.
      const words = el("pre", { class: "output words" });
      turns[tid] = { li: el("li", { class: "turn", "data-turn": tid }, el("div", {}, "Turn ", status), out, words), status, out, words };
      thread.append(turns[tid].li);
    }
    return turns[tid];
  }
  function setRunning(tid, st) {
    running = (st === "running" || st === "stalled") ? tid : (running === tid ? null : running);
    stopBtn.hidden = !running;
    nudgeBtn.hidden = !(running && st === "stalled");
    stopBtn.onclick = () => api("POST", `/api/v1/sessions/${id}/turns/${running}/cancel`).catch(e => notice(e.message));
    nudgeBtn.onclick = () => api("POST", `/api/v1/sessions/${id}/turns/${running}/nudge`).catch(e => notice(e.message));
  }
  function jobCard(j) {
    let c = jobs[j.id];
    if (!c) {
      const status = el("span", { class: "badge" }), elapsed = el("span", { class: "muted" });
      const stop = el("button", { type: "button", class: "small danger", text: "Stop", onclick: () => api("POST", `/api/v1/sessions/${id}/jobs/${j.id}/stop`).catch(e => notice(e.message)) });
      const log = el("pre", { class: "output" }), preview = el("a", { target: "_blank", rel: "noopener noreferrer", hidden: true, text: "Preview" });
      const details = el("details", {}, el("summary", { text: "Log" }), log);
      c = jobs[j.id] = { li: el("li", { class: "card run", "data-job": j.id }, el("div", {}, el("strong", { text: "Run " }), el("code", { text: j.command }), " ", status, " ", elapsed, " ", stop, " ", preview), el("div", { class: "muted", text: "in " + j.cwd }), details), status, elapsed, stop, log, preview, started: Date.parse(j.started) };
      thread.append(c.li);
    }
    c.status.textContent = j.status + (j.exit_code !== undefined && j.exit_code !== null && j.status !== "running" ? " (" + j.exit_code + ")" : "") + (j.signal ? " (" + j.signal + ")" : "");
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
  function confirmCard(c) {
    if (confirms[c.id]) return confirms[c.id];
    const answer = a => api("POST", `/api/v1/sessions/${id}/confirmations/${c.id}`, { answer: a }).catch(e => notice(e.message));
    const buttons = el("div", { class: "buttons" },
      el("button", { type: "button", class: "primary", onclick: () => answer("yes"), text: "Yes" }),
      el("button", { type: "button", onclick: () => answer("no"), text: "No" }),
      el("button", { type: "button", class: "danger", onclick: () => answer("cancel"), text: "Cancel" }));
    const result = el("p", { class: "muted", role: "status" });
    const deadline = el("p", { class: "muted", text: "No answer by " + new Date(c.deadline).toLocaleTimeString() + " counts as no." });
    const li = el("li", { class: "card confirm", "data-confirm": c.id, role: "group", "aria-label": "Confirmation" },
      el("p", {}, el("strong", { text: "The agent asks: " }), c.summary), deadline, buttons, result);
    thread.append(li);
    return confirms[c.id] = { li, buttons, result, deadline };
  }
  function onEvent(e) {
    const d = e.data || {};
    switch (e.type) {
      case "message":
        if (d.role === "assistant" && turns[e.turn]) turns[e.turn].words.remove();
        thread.append(el("li", { class: "msg " + d.role }, el("span", { class: "who", text: d.role === "user" ? "You" : "Agent" }), el("p", { text: d.text })));
        break;
      case "turn.state": {
        const t = turnBox(e.turn);
        t.status.textContent = d.state + (d.detail ? ": " + d.detail : "");
        t.status.className = "badge " + d.state;
        setRunning(e.turn, d.state);
        if (d.state !== "running" && d.state !== "stalled") toggles.turnEnded(e.turn);
        break;
      }
      case "turn.output":
        if (d.stream === "stderr") turnBox(e.turn).out.append(d.text + "\n");
        else if (!/^→ /.test(d.text)) turnBox(e.turn).words.append(d.text + "\n");
        break;
      case "turn.nudged": turnBox(e.turn).out.append("(nudged)\n"); break;
      case "job.started": case "job.state": jobCard(d); break;
      case "job.output": if (jobs[e.job]) jobs[e.job].log.append(d.text + "\n"); break;
      case "job.preview": if (jobs[e.job]) { jobs[e.job].preview.href = d.url; jobs[e.job].preview.hidden = false; } focus.addPage(d.url); break;
      case "confirm.open": confirmCard(d); break;
      case "confirm.closed": {
        const c = confirmCard(d);
        c.buttons.remove();
        c.deadline.remove();
        // Who answered, inside the card; nobody in time is a no.
        c.result.textContent = d.by ? `Answered ${d.answer} by ${d.by}.` : `No answer in time: ${d.answer}.`;
        break;
      }
      case "device.action":
        thread.append(el("li", { class: "action " + d.outcome }, `${d.action} on ${deviceName(devices, d.device)}: ${d.outcome}${d.detail ? " (" + d.detail + ")" : ""}`));
        toggles.acting(d.device, d, ((d.who || "").match(/\(turn (t-[0-9a-z]+)\)/) || [])[1]);
        // Opening or reloading a page replays these: it never acts on the
        // computer itself (that is the person's click on Refresh).
        if (d.outcome === "done" && d.action.startsWith("browser.")) focus.noted(d);
        break;
      case "grant.changed": toggles.changed(d); break;
      case "session.warning": banner.hidden = false; banner.textContent = d.message; break;
      case "session.killed": thread.append(el("li", { class: "action failed", text: "All work in this conversation was stopped." })); break;
      case "session.renamed": {
        // The title here and in the sidebar.
        title.textContent = d.title;
        const link = document.querySelector(`nav.convs a[href="#/c/${id}"]`);
        if (link) link.textContent = d.title;
        break;
      }
    }
    thread.lastElementChild && thread.lastElementChild.scrollIntoView({ block: "nearest" });
  }
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

function deviceToggles(sid, devices, grants) {
  const node = el("fieldset", { class: "toggles" }, el("legend", { text: "Device control in this conversation" }));
  const rows = {};
  if (!devices.length) node.append(el("p", { class: "muted" }, "No paired computers. ", el("a", { href: "#/devices", text: "Pair one" })));
  for (const d of devices) {
    const g = grants.find(x => x.device === d.id) || {};
    const who = el("span", { class: "muted" });
    const indicator = el("span", { class: "acting", role: "status", hidden: true });
    const setWho = gr => { who.textContent = (gr.browser || gr.desktop) && gr.by ? `on, by ${gr.by} at ${new Date(gr.at).toLocaleTimeString()}` : "off"; };
    setWho(g);
    const box = (kind, label) => {
      const input = el("input", { type: "checkbox", "data-device": d.id, "data-toggle": kind, checked: !!g[kind] });
      input.addEventListener("change", async () => {
        try {
          const gr = await api("PUT", `/api/v1/sessions/${sid}/devices/${d.id}/access`, { [kind]: input.checked });
          setWho(gr.browser || gr.desktop ? gr : {});
        } catch (e) { input.checked = !input.checked; notice(e.message); }
      });
      return el("label", { class: "toggle" }, input, label);
    };
    const stopNow = el("button", { type: "button", class: "small danger", text: "Stop control", onclick: async () => {
      await api("PUT", `/api/v1/sessions/${sid}/devices/${d.id}/access`, { browser: false, desktop: false });
      node.querySelectorAll(`input[data-device="${d.id}"]`).forEach(i => i.checked = false);
      indicator.hidden = true; setWho({});
    } });
    indicator.append("Agent acting on this computer ", stopNow);
    rows[d.id] = { indicator, setWho };
    node.append(el("div", { class: "device-row" }, el("strong", { text: d.name }), el("span", { class: d.online ? "online" : "offline", text: d.online ? "online" : "offline" }),
      box("browser", "Browser access"), box("desktop", "Desktop access"), who, indicator));
  }
  return {
    node,
    // Shown while the agent's turn that acted runs (an agent action outside
    // a turn: for 15 s). A person's own actions (the focus pane's
    // screenshots) do not count.
    acting(device, d, turn) {
      const r = rows[device];
      if (!r || d.outcome !== "done" || !(d.who || "").startsWith("agent")) return;
      r.indicator.hidden = false;
      r.turn = turn || null;
      clearTimeout(r.timer);
      if (!turn) r.timer = setTimeout(() => { r.indicator.hidden = true; }, 15000);
    },
    turnEnded(turn) {
      for (const r of Object.values(rows)) {
        if (r.turn === turn) { r.indicator.hidden = true; r.turn = null; }
      }
    },
    // Someone (here or on another page) changed a toggle: show the truth.
    changed(g) {
      const r = rows[g.device];
      if (!r) return;
      node.querySelectorAll(`input[data-device="${g.device}"]`).forEach(i => { i.checked = !!g[i.dataset.toggle]; });
      r.setWho(g.browser || g.desktop ? g : {});
      if (!g.browser && !g.desktop) r.indicator.hidden = true;
    },
  };
}

// ---- the focus pane: live screen, screenshots, pages ------------------

function stopLive() {
  if (state.live) { state.live.onclose = null; state.live.close(); state.live = null; }
}

function focusPane(sid, devices) {
  const img = el("img", { id: "focus-img", alt: "What the agent sees", hidden: true });
  const caption = el("p", { class: "muted", id: "focus-caption", text: "Screenshots and the live screen of the computer being driven show here." });
  const pages = el("ul", { class: "pages" });
  const pick = el("select", { "aria-label": "Computer" }, devices.map(d => el("option", { value: d.id, text: d.name })));
  let url = null;
  const show = (blob, text) => {
    if (url) URL.revokeObjectURL(url);
    url = URL.createObjectURL(blob);
    img.src = url; img.hidden = false; caption.textContent = text;
  };
  async function refresh(device) {
    device = device || pick.value;
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
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/sessions/${sid}/devices/${device}/live?source=${source}&fps=10`);
    ws.binaryType = "blob";
    ws.onmessage = m => show(new Blob([m.data], { type: "image/jpeg" }), `live ${source} of ${deviceName(devices, device)}`);
    ws.onclose = ev => { caption.textContent = "live view ended" + (ev.reason ? ": " + ev.reason : " (is the toggle on?)"); };
    state.live = ws;
  }
  const tabs = el("div", { class: "buttons", role: "toolbar", "aria-label": "Focus pane" },
    el("button", { type: "button", onclick: () => refresh(), text: "Refresh" }),
    el("button", { type: "button", onclick: () => live("browser"), text: "Live tab" }),
    el("button", { type: "button", onclick: () => live("screen"), text: "Live screen" }),
    el("button", { type: "button", onclick: stopLive, text: "Pause" }),
    el("button", { type: "button", onclick: () => { if (url) window.open(url, "_blank", "noopener"); }, text: "Pop out" }),
    el("button", { type: "button", onclick: () => img.requestFullscreen && img.requestFullscreen(), text: "Fullscreen" }));
  const node = el("aside", { class: "focus", "aria-label": "Focus pane" }, el("h2", { text: "Focus" }), pick, tabs, img, caption, el("h3", { text: "Pages" }), pages);
  return {
    node, refresh,
    // An agent's browser action: said, not looked at (a look is an action
    // of its own, the person's).
    noted(d) {
      if (pick.value !== d.device) return;
      caption.textContent = `The agent ran ${d.action} on ${deviceName(devices, d.device)}. Refresh to look.`;
    },
    addPage(u) { pages.append(el("li", {}, el("a", { href: u, target: "_blank", rel: "noopener noreferrer", text: u }))); },
  };
}

// ---- devices, audit, people ------------------------------------------

async function showDevices() {
  const list = el("ul", { class: "devices" });
  const pairBox = el("div", { class: "card", id: "pairing", hidden: true });
  const owner = state.me.role === "owner";
  async function load() {
    const ds = await api("GET", "/api/v1/devices");
    list.replaceChildren(...ds.map(d => el("li", { class: "card", "data-device": d.id },
      el("strong", { text: d.name }), " ", el("span", { class: d.online ? "online" : "offline", text: d.online ? "online" : "offline" }),
      el("span", { class: "muted", text: ` · ${d.platform || "?"} · last seen ${d.last_seen ? new Date(d.last_seen).toLocaleString() : "never"}` }),
      owner ? el("button", { type: "button", class: "small danger", text: "Revoke", onclick: async () => {
        if (!confirm(`Unpair ${d.name}? Its link closes now and it cannot connect again.`)) return;
        await api("DELETE", "/api/v1/devices/" + d.id);
        load();
      } }) : null)));
    if (!ds.length) list.append(el("li", { class: "muted", text: "No paired computers yet." }));
  }
  const pairBtn = owner ? el("button", { type: "button", class: "primary", text: "Pair a computer", onclick: async () => {
    try {
      const c = await api("POST", "/api/v1/pairing/codes");
      pairBox.hidden = false;
      pairBox.replaceChildren(el("p", {}, "Pairing code: ", el("strong", { id: "pair-code", text: c.code }), ` (valid until ${new Date(c.expires_at).toLocaleTimeString()})`),
        el("p", { text: "On the computer, run:" }), el("pre", { id: "pair-command", text: `lowkey-companion pair --hub ${location.host} --code ${c.code}` }),
        el("p", { class: "muted", text: "It appears below once it has paired." }));
    } catch (e) { notice(e.message); }
  } }) : el("p", { class: "muted", text: "Only the owner pairs and revokes computers." });
  main(el("section", { class: "page" }, el("h1", { text: "Devices" }), pairBtn, pairBox, list));
  await load();
  state.timers.push(setInterval(load, 1500));
}

async function showAudit() {
  const [devices, convs] = await Promise.all([api("GET", "/api/v1/devices"), api("GET", "/api/v1/sessions")]);
  const dev = el("select", { name: "device", "aria-label": "Device" }, el("option", { value: "", text: "All devices" }), devices.map(d => el("option", { value: d.id, text: d.name })));
  const conv = el("select", { name: "session", "aria-label": "Conversation" }, el("option", { value: "", text: "All conversations" }), convs.map(s => el("option", { value: s.id, text: s.title })));
  const body = el("tbody");
  const exportLink = el("a", { text: "Export (JSON lines)", download: "lowkey-audit.jsonl" });
  async function load() {
    const q = `device=${encodeURIComponent(dev.value)}&session=${encodeURIComponent(conv.value)}`;
    exportLink.href = "/api/v1/audit?format=jsonl&" + q;
    const recs = await api("GET", "/api/v1/audit?" + q);
    body.replaceChildren(...recs.reverse().map(r => el("tr", {},
      el("td", { text: new Date(r.time).toLocaleString() }), el("td", { text: r.who }), el("td", { text: deviceName(devices, r.device) }),
      el("td", { text: r.action }), el("td", { text: r.outcome + (r.answer ? " (" + r.answer + ")" : "") }), el("td", {}, el("code", { text: r.args ? JSON.stringify(r.args) : "" })))));
  }
  dev.onchange = conv.onchange = load;
  main(el("section", { class: "page" }, el("h1", { text: "Audit" }), el("div", { class: "buttons" }, dev, conv, exportLink),
    el("table", {}, el("thead", {}, el("tr", {}, ["When", "Who", "Device", "Action", "Outcome", "Arguments"].map(h => el("th", { scope: "col", text: h })))), body)));
  load();
}

async function showPeople() {
  if (state.me.role !== "owner") {
    main(el("section", { class: "page" }, el("h1", { text: "People" }),
      el("p", { text: "Only the box's owner adds and removes people." }),
      el("p", { class: "muted", text: "Every conversation on this box is shared with everyone who can sign in to it." })));
    return;
  }
  const list = el("ul");
  async function load() {
    const us = await api("GET", "/api/v1/users");
    list.replaceChildren(...us.map(u => el("li", { class: "card" }, el("strong", { text: u.name }), " ", el("span", { class: "muted", text: u.role }),
      u.role !== "owner" ? el("button", { type: "button", class: "small danger", text: "Remove", onclick: async () => {
        if (!confirm(`Remove ${u.name}? They are signed out everywhere at once.`)) return;
        await api("DELETE", "/api/v1/users/" + encodeURIComponent(u.name));
        load();
      } }) : null)));
  }
  const add = form("Add someone", [["name", "Name", "text"], ["password", "Their password (10 characters or more)", "password"]], "Add",
    async d => { await api("POST", "/api/v1/users", d); add.reset(); load(); },
    "Everyone on this box can drive its agents: they run commands on the box and, where a conversation's toggles are on, act on paired computers.");
  main(el("section", { class: "page" }, el("h1", { text: "People" }), list, add));
  load();
}

$("#signout").addEventListener("click", async () => {
  try { await api("POST", "/api/v1/logout"); } catch {}
  state.me = null;
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", route);
route();
