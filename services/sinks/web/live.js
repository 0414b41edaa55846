// The live page: the tracks table (polled), the Faces / Recent / Health panels (Server-Sent Events),
// and "Name…" on a face. Names are typed in by people: they are only ever set as text, never as HTML.
// Requests go to location.origin: a page opened as http://user:pw@host/ would hand fetch() a URL
// with credentials, which it refuses.
"use strict";
const api = path => new URL(path, location.origin);
const byId = id => document.getElementById(id);
const text = s => String(s ?? "").replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`);
const clock = t => new Date(t * 1000).toLocaleTimeString();

const row = t => `<tr><td><span class="swatch" style="background:${t.color}"></span> ${t.id}</td>` +
  `<td>${text(t.name)}</td><td>${t.box.map(v => v.toFixed(0)).join(", ")}</td><td>${t.score.toFixed(2)}</td><td>${t.state}</td></tr>`;

async function poll() {
  try {
    const r = await fetch(api("/tracks.json"), {cache: "no-store"});
    if (r.ok) {
      const d = await r.json();
      byId("status").textContent = `frame ${d.frame_id} (source ${d.source_pos})`;
      byId("tracks").innerHTML = d.tracks.map(row).join("");
    }
  } catch (e) {
    byId("status").textContent = "no connection";
  }
  setTimeout(poll, 200);
}

// One <li> per track, kept across updates (its thumbnail is loaded once, not at every event).
// A track is f.track, its key (tracker run and id): a restarted tracker numbers other faces
// from 1 again, so the id alone (f.track_id, shown) could name someone else.
function face(list, f, recent) {
  const key = `${list.id}-${f.track}`;
  let li = document.getElementById(key);
  if (!li) {
    li = document.createElement("li");
    li.id = key;
    const img = document.createElement("img");
    img.alt = `track ${f.track_id}`;
    img.src = api(f.thumbnail);
    img.onerror = () => setTimeout(() => { img.src = api(f.thumbnail) + "?" + Date.now(); }, 2000);
    const info = document.createElement("div");
    const who = document.createElement("div");
    who.className = "who";
    const when = document.createElement("div");
    const button = document.createElement("button");
    button.className = "name-button";
    button.dataset.track = f.track;
    button.onclick = () => startNaming(f);
    info.append(who, when, button);
    li.append(img, info);
  }
  const [, info] = li.children;
  const [who, when, button] = info.children;
  who.textContent = f.name && f.name !== "unknown" ? f.name : "unknown";
  who.classList.toggle("unknown", who.textContent === "unknown");
  when.textContent = recent ? `${clock(f.first)} – ${clock(f.last)} (${f.duration_s} s)` : `since ${clock(f.first)}`;
  button.textContent = who.textContent === "unknown" ? "Name…" : "Add view…";
  return li;
}

function fill(list, items, recent) {
  const keep = items.map(f => face(list, f, recent));
  list.replaceChildren(...keep);
}

function health(h) {
  const parts = h.stages.map(s => s.up
    ? `${text(s.service)} ${s.fps} fps ${s.p50_ms} ms` + (s.dropped ? ` (${s.dropped} dropped)` : "")
    : `<span class="down">${text(s.service)} down</span>`);
  for (const [program, why] of Object.entries(h.down)) parts.unshift(`<span class="down">${text(program)} ${text(why)}</span>`);
  if (h.restarts !== undefined) parts.push(`restarts ${h.restarts}`);
  if (h.board && h.board.temp_c !== undefined) parts.push(`${h.board.temp_c.toFixed(0)} °C`);
  if (h.board && h.board.throttled_flags) parts.push(`<span class="down">throttled</span>`);
  byId("health").innerHTML = parts.join(" · ") || "health: no metrics yet";
}

function show(state) {
  fill(byId("faces"), state.faces, false);
  fill(byId("recent"), state.recent, true);
  health(state.health);
}

// ok: true (done), false (refused), null (asked, waiting for the answer)
function notice(message, ok) {
  const n = byId("notice");
  n.textContent = message;
  n.className = ok === null ? "pending" : ok ? "ok" : "err";
}

let naming = null;  // the track key of the face being named
function startNaming(f) {
  naming = f.track;
  byId("naming-track").textContent = f.track_id;
  byId("naming").hidden = false;
  byId("name-input").value = "";
  byId("name-input").focus();
}

byId("name-cancel").onclick = () => { byId("naming").hidden = true; naming = null; };
byId("naming").onsubmit = async event => {
  event.preventDefault();
  const name = byId("name-input").value;
  notice(`naming track ${naming.split("-")[1]}…`, null);
  try {
    const r = await fetch(api("/faces/name"), {method: "POST", headers: {"Content-Type": "application/json"},
                                                body: JSON.stringify({track: naming, name})});
    const d = await r.json();
    notice(r.ok ? d.detail : (d.error || `refused (${r.status})`), r.ok);
    if (r.ok) byId("naming").hidden = true;
  } catch (e) {
    notice("no connection", false);
  }
};

async function start() {
  try {
    const r = await fetch(api("/faces.json"), {cache: "no-store"});
    if (r.ok) show(await r.json());
  } catch (e) { /* the events will come */ }
  const events = new EventSource(api("/events"));
  events.onmessage = e => show(JSON.parse(e.data));
}
poll();
start();
