// The People page: enrolled people with their enrolment thumbnails; rename, add a view from a
// recent face, remove (a secure delete in the gallery). Names are only ever set as text.
"use strict";
const api = path => new URL(path, location.origin);
const byId = id => document.getElementById(id);

// ok: true (done), false (refused), null (asked, waiting for the answer)
function notice(message, ok) {
  const n = byId("notice");
  n.textContent = message;
  n.className = ok === null ? "pending" : ok ? "ok" : "err";
}

async function post(path, body) {
  notice("asking the identity service…", null);
  try {
    const r = await fetch(api(path), {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(body)});
    const d = await r.json();
    notice(r.ok ? d.detail : (d.error || `refused (${r.status})`), r.ok);
    if (r.ok) load();
  } catch (e) {
    notice("no connection", false);
  }
}

function el(tag, props = {}, ...children) {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

function person(p, recent) {
  const thumbs = el("div", {}, ...p.faces.map(f => f.thumbnail
    ? el("img", {src: api(f.thumbnail), alt: `${p.name}, face ${f.id}`}) : el("span", {textContent: "(no picture) "})));
  const rename = el("input", {className: "rename-input", maxLength: 40, value: p.name});
  const renameButton = el("button", {className: "rename", textContent: "Rename",
                                     onclick: () => post("/people/rename", {name: p.name, new_name: rename.value})});
  const pick = el("select", {className: "recent-pick"},
                  ...recent.map(f => el("option", {value: f.track, textContent: `track ${f.track_id} (${f.name || "unknown"})`})));
  const addView = el("button", {className: "add-view", textContent: "Add view", disabled: !recent.length,
                                onclick: () => post("/faces/name", {track: pick.value, name: p.name})});
  const remove = el("button", {className: "remove", textContent: "Remove"});
  remove.onclick = () => {
    if (remove.dataset.armed) post("/people/remove", {name: p.name});
    else { remove.dataset.armed = "1"; remove.textContent = `Really remove ${p.name}?`; }
  };
  return el("div", {className: "person"},
            el("div", {className: "who", textContent: `${p.name} (${p.faces.length} face${p.faces.length === 1 ? "" : "s"})`}),
            thumbs, el("div", {}, rename, renameButton, " ", pick, addView, " ", remove));
}

async function load() {
  try {
    const [people, faces] = await Promise.all([fetch(api("/people.json"), {cache: "no-store"}),
                                               fetch(api("/faces.json"), {cache: "no-store"})]);
    const p = await people.json();
    const f = faces.ok ? await faces.json() : {faces: [], recent: []};
    if (!people.ok) { notice(p.error, false); return; }
    const recent = [...f.faces, ...f.recent];
    const list = byId("people");
    list.replaceChildren(...p.people.map(x => person(x, recent)));
    if (!p.people.length) list.textContent = "nobody enrolled yet: name a face on the live page";
  } catch (e) {
    notice("no connection", false);
  }
}
load();
