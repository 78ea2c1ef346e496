// The answer page: lists the questions waiting for the person at this
// computer and sends their answers. The token is in the address's
// fragment (never sent to a server by the browser on its own).
"use strict";
const token = location.hash.slice(1);
const list = document.getElementById("questions");
const state = document.getElementById("state");
const call = (method, path, body) => fetch(path, {
  method, headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
  body: body ? JSON.stringify(body) : undefined,
}).then(async r => { const j = await r.json(); if (!r.ok) throw new Error(j.error || r.statusText); return j; });

let shown = "";
function draw(qs) {
  const key = JSON.stringify(qs.map(q => q.id));
  if (key === shown) { tick(qs); return; }
  shown = key;
  list.replaceChildren(...qs.map(q => {
    const li = document.createElement("li");
    li.dataset.id = q.id;
    const what = document.createElement("p");
    what.className = "what";
    what.textContent = `Conversation ${q.conversation} wants ${q.capability} access on this computer (its first action: ${q.action}).`;
    const left = document.createElement("p");
    left.className = "muted left";
    const buttons = document.createElement("div");
    buttons.className = "buttons";
    for (const [answer, text, cls] of [["conversation", "Allow for this conversation", "allow"], ["hour", "Allow for an hour", ""], ["deny", "Deny", "deny"]]) {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = text; if (cls) b.className = cls;
      b.addEventListener("click", async () => {
        try { await call("POST", "/api/answer", { id: q.id, answer }); state.textContent = `Answered: ${text}.`; refresh(); }
        catch (e) { state.textContent = e.message; }
      });
      buttons.append(b);
    }
    li.append(what, left, buttons);
    return li;
  }));
  tick(qs);
  if (!qs.length) state.textContent = state.textContent || "Nothing waits for you now.";
}
function tick(qs) {
  for (const q of qs) {
    const el = list.querySelector(`li[data-id="${q.id}"] .left`);
    if (el) el.textContent = `${Math.max(0, Math.round((Date.parse(q.deadline) - Date.now()) / 1000))} s left to answer; no answer is a no.`;
  }
}
async function refresh() {
  try { draw(await call("GET", "/api/questions")); }
  catch (e) { state.textContent = "This page cannot reach the companion: " + e.message; }
}
refresh();
setInterval(refresh, 1000);
