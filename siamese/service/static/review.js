// The review page of a `siamese cluster` result (served by `siamese review DIR`).
// Plain JS, no build step. Every change is POSTed with the revision the page shows; the server
// answers with the new state, or 409 when another tab (or anything else) changed the result first,
// and the page then reloads the state. The DOM is built with textContent only (names are user text).
"use strict";

const TOKEN = document.querySelector('meta[name="review-token"]').content;
const TITLES = { unassigned: "Unassigned", not_a_face: "Not a face" };
let state = null;
const selected = new Set();

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function say(text, isError = false) {
  $("status").textContent = text || "";
  $("status").className = isError ? "error" : "";
}

async function load(message) {
  const r = await fetch("/review/api/state", { cache: "no-store" });
  const data = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) return say(data.error, true);
  state = data;
  const ids = new Set(state.folders.flatMap((f) => f.faces.map((x) => x.id)));
  for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
  render();
  if (message !== undefined) say(message);
}

async function post(op, body = {}) {
  const r = await fetch(`/review/api/${op}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-review-token": TOKEN },
    body: JSON.stringify({ revision: state.revision, ...body }),
  });
  const data = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (r.status === 409 && data.error && data.error.includes("changed since")) {
    await load(`${data.error} — reloaded.`);
    return null;
  }
  if (!r.ok) {
    say(data.error || `${r.status}`, true);
    return null;
  }
  return data;
}

async function change(op, body, done) {
  const next = await post(op, body);
  if (!next) return;
  state = next;
  selected.clear();
  render();
  say(done);
}

function faceTile(face) {
  const when = state.kind === "video" && face.time_s !== ""
    ? `${Number(face.time_s).toFixed(1)} s` : face.source.split("/").pop();
  const img = el("img", { loading: "lazy", width: 92, height: 92, alt: when,
                          src: `/review/faces/${encodeURIComponent(face.id)}` });
  const caption = el("figcaption", {}, when + (Number(face.track_faces) > 1 ? ` ×${face.track_faces}` : ""));
  const fig = el("figure", { className: "face" + (selected.has(face.id) ? " selected" : ""),
                             dataset: { id: face.id }, title: face.id }, img, caption);
  if (Number(face.track_faces) > 1) fig.title += ` (stands for ${face.track_faces} frames of one track)`;
  fig.addEventListener("click", () => {
    if (selected.has(face.id)) selected.delete(face.id); else selected.add(face.id);
    fig.classList.toggle("selected");
    toolbar();
  });
  return fig;
}

function personControls(folder, people) {
  const input = el("input", { className: "name-input", value: folder.named ? folder.name : "",
                              placeholder: "Name this person", "aria-label": `name for ${folder.name}` });
  const nameForm = el("form", { className: "name-form" }, input,
                      el("button", { className: "name-btn", type: "submit" }, folder.named ? "Rename" : "Name"));
  nameForm.addEventListener("submit", (e) => {
    e.preventDefault();
    change("name", { folder: folder.name, name: input.value }, `Named ${folder.name} “${input.value.trim()}”.`);
  });
  const others = people.filter((p) => p.name !== folder.name);
  const select = el("select", { className: "merge-select", "aria-label": `merge ${folder.name} into` },
                    ...others.map((p) => el("option", { value: p.name }, p.name)));
  const mergeForm = el("form", { className: "merge-form" },
                       el("button", { className: "merge-btn", type: "submit", disabled: !others.length }, "Merge into"),
                       select);
  mergeForm.addEventListener("submit", (e) => {
    e.preventDefault();
    change("merge", { into: select.value, folders: [folder.name] }, `Merged ${folder.name} into ${select.value}.`);
  });
  return [nameForm, mergeForm];
}

function render() {
  $("dir").textContent = state.dir;
  const people = state.folders.filter((f) => f.kind === "person");
  const faces = state.folders.reduce((n, f) => n + f.faces.length, 0);
  $("summary").textContent = `${people.length} people (${people.filter((f) => f.named).length} named), ` +
    `${faces} faces · ${state.kind} · revision ${state.revision.slice(0, 8)}`;
  document.body.dataset.revision = state.revision;
  $("undo-btn").disabled = !state.can_undo;
  $("undo-btn").textContent = state.can_undo ? `Undo: ${state.undo}` : "Undo";
  const cards = state.folders.map((folder) => {
    const count = `${folder.faces.length} face${folder.faces.length === 1 ? "" : "s"}`;
    const title = el("h2", {}, TITLES[folder.kind] || folder.name, el("span", { className: "count" }, count));
    if (folder.kind === "person" && !folder.named) title.append(el("span", { className: "tag" }, "unnamed"));
    const grid = folder.faces.length ? el("div", { className: "faces" }, ...folder.faces.map(faceTile))
      : el("p", { className: "empty" }, "no faces");
    const parts = folder.kind === "person" ? personControls(folder, people) : [];
    return el("section", { className: "card", dataset: { folder: folder.name, kind: folder.kind } },
              title, ...parts, grid);
  });
  $("folders").replaceChildren(...cards);
  const targets = state.folders.filter((f) => f.kind !== "not_a_face");
  const keep = $("move-to").value;
  $("move-to").replaceChildren(...targets.map((f) => el("option", { value: f.name }, TITLES[f.kind] || f.name)));
  if (targets.some((f) => f.name === keep)) $("move-to").value = keep;
  toolbar();
  loadAlike();
}

// "May be the same person": person folders and unassigned faces alike on average (GET /review/api/alike,
// computed for one revision from the crops' saved embeddings). "Not the same" tells the server the
// two are two people (kept in DIR/.review, for every tab and later reviews); Merge keeps the named
// folder, else the one with more faces.
let alike = null;        // the last answer, for the revision it was computed on
let alikeAsked = null;   // the revision last asked about

// An item is a person folder, or one unassigned face: "unassigned/" + its id (the crop's file name).
const FACE = "unassigned/";
const isFace = (item) => item.startsWith(FACE);
const faceId = (item) => item.slice(FACE.length);
const pairKey = (p) => JSON.stringify([...p.folders].sort());
const label = (item) => isFace(item) ? "the unassigned face" : item;

function folderLink(name) {
  return el("a", { href: "#", className: "folder-link", onclick: (e) => {
    e.preventDefault();
    const card = document.querySelector(`section.card[data-folder="${CSS.escape(name)}"]`);
    if (card) card.scrollIntoView({ block: "start" });
  } }, name);
}

// A few of a folder's faces, small, so a pair can be judged without scrolling to its cards.
function peek(item) {
  const folder = state.folders.find((f) => f.name === item);
  const faces = isFace(item) ? [{ id: faceId(item) }] : folder ? folder.faces.slice(0, 3) : [];
  return el("span", { className: "peek" }, ...faces.map((face) =>
    el("img", { loading: "lazy", width: 36, height: 36, alt: "", src: `/review/faces/${encodeURIComponent(face.id)}` })));
}

async function loadAlike(again = false) {
  const rev = state.revision;
  if (alikeAsked === rev && !again) return;
  alikeAsked = rev;
  $("alike").hidden = false;
  $("alike-note").textContent = alike ? "Looking again…" : "Looking for folders that may be one person…";
  $("alike-list").replaceChildren();  // the pairs of another revision may name folders gone since
  // A result clustered with another model (or before crops' embeddings were saved) has every crop
  // embedded on the first answer: say how far that is while it runs.
  const poll = setInterval(async () => {
    const p = await fetch("/review/api/alike/progress", { cache: "no-store" }).then((x) => x.json()).catch(() => null);
    if (p && p.total && p.done < p.total && alikeAsked === rev) {
      $("alike-note").textContent = `Looking at each face: ${p.done} of ${p.total}…`;
    }
  }, 1000);
  const r = await fetch("/review/api/alike", { cache: "no-store" }).finally(() => clearInterval(poll));
  const data = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (state.revision !== rev) return;  // changed meanwhile: the newer revision's answer follows
  if (!r.ok) {
    alikeAsked = null;  // ask again on the next change
    $("alike-note").textContent = data.error || `${r.status}`;
    $("alike-list").replaceChildren();
    return;
  }
  alike = data;
  renderAlike();
}

function renderAlike() {
  if (!alike) return;
  const pairs = alike.pairs;
  const bar = alike.bar === null ? "" : alike.bar.toFixed(2);
  let note = pairs.length
    ? "Mean cosine of their faces" + (bar ? ` (clustering merges big groups from ${bar}).` : ".")
    : "No two folders or unassigned faces look alike" + (bar ? ` (none reach ${bar}, the bar big groups need).` : ".");
  if (alike.no_face) note += ` ${alike.no_face} crop${alike.no_face === 1 ? "" : "s"} without a face found left out.`;
  const parts = [note];
  if (alike.not_same) {
    const forget = el("button", { id: "forget-not-same", onclick: async () => {
      if (await post("forget-not-same")) { say("Every pair is listed again."); loadAlike(true); }
    } }, "List them again");
    parts.push(` ${alike.not_same} pair${alike.not_same === 1 ? "" : "s"} marked not the same. `, forget);
  }
  $("alike-note").replaceChildren(...parts);
  $("alike-list").replaceChildren(...pairs.map((p) => {
    const [keep, other] = p.folders;
    let act;  // two folders: merge; a face and a folder: move the face there; two faces: a new folder
    if (!isFace(keep) && !isFace(other)) {
      act = el("button", { className: "alike-merge", onclick: () =>
        change("merge", { into: keep, folders: [other] }, `Merged ${other} into ${keep}.`) }, `Merge into ${keep}`);
    } else if (isFace(keep) && isFace(other)) {
      act = el("button", { className: "alike-merge", onclick: () =>
        change("split", { faces: [faceId(keep), faceId(other)] }, "Put the two faces in a new folder.") },
        "Put both in a new folder");
    } else {
      const [face, folder] = isFace(other) ? [other, keep] : [keep, other];
      act = el("button", { className: "alike-merge", onclick: () =>
        change("move", { faces: [faceId(face)], to: folder }, `Moved the face to ${folder}.`) }, `Move it into ${folder}`);
    }
    const no = el("button", { className: "alike-dismiss", onclick: async () => {
      const done = await post("not-same", { folders: [keep, other] });
      if (done) {
        const undo = el("button", { id: "undo-not-same", onclick: async () => {
          if (await post("forget-not-same", { faces: done.faces })) {
            say(`${label(other)} and ${label(keep)}: listed again.`);
            loadAlike(true);
          }
        } }, "Undo");
        say(`${label(other)} and ${label(keep)}: marked not the same. `);
        $("status").append(undo);
        loadAlike(true);
      }
    } }, "Not the same");
    // A folder's count as its card says it (its crops; a video crop may stand for more faces, all compared).
    const crops = (item) => state.folders.find((f) => f.name === item)?.faces.length ?? 0;
    const side = (item) => isFace(item) ? ["an unassigned face", peek(item)] : [folderLink(item), ` (${crops(item)})`, peek(item)];
    return el("li", { dataset: { pair: pairKey(p) } }, ...side(other), " and ", ...side(keep),
              `: ${p.likeness.toFixed(2)}`, act, no);
  }));
}

function toolbar() {
  $("toolbar").hidden = selected.size === 0;
  $("selection").textContent = `${selected.size} selected`;
}

$("move-btn").addEventListener("click", () => {
  const to = $("move-to").value;
  change("move", { faces: [...selected], to }, `Moved ${selected.size} to ${to}.`);
});
$("split-btn").addEventListener("click", () =>
  change("split", { faces: [...selected] }, `Split ${selected.size} into a new folder.`));
$("notface-btn").addEventListener("click", () =>
  change("not-a-face", { faces: [...selected] }, `Marked ${selected.size} not a face.`));
$("clear-btn").addEventListener("click", () => { selected.clear(); render(); });
$("undo-btn").addEventListener("click", () => change("undo", {}, `Undone: ${state.undo}.`));
$("export-btn").addEventListener("click", async () => {
  const r = await post("export");
  if (r) say(`Exported ${Object.keys(r.people).length} people to ${r.out}`);
});
$("gallery-btn").addEventListener("click", async () => {
  say("Adding to the gallery…");
  const r = await post("gallery");
  if (!r) return;
  const lines = Object.entries(r.people).map(([n, c]) => `${n}: ${c.added} added` +
    (c.duplicates ? `, ${c.duplicates} already there` : "") + (c.no_face ? `, ${c.no_face} without a face` : "") +
    (c.unreadable ? `, ${c.unreadable} unreadable` : ""));
  say(`Gallery ${r.gallery}: ${lines.join("; ")}`);
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && selected.size) { selected.clear(); render(); }
});
// Another tab may have changed the result: look again whenever this one is shown.
document.addEventListener("visibilitychange", () => { if (!document.hidden) load(); });

load();
