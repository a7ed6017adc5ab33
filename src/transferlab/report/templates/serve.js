"use strict";
const $ = id => document.getElementById(id);
const drop = $("drop"), input = $("file"), toggle = $("explain"), tokenForm = $("token-form"), error = $("error");
let pending = null, current = null, overlays = new Map();

fetch("/health").then(r => r.json()).then(h => {
  $("title").textContent = `Which ${h.noun} is it?`;
  document.title = `transferlab: ${h.data || "try the model"}`;
  const data = h.data ? `${h.data} · ` : "";
  $("model").textContent = `${data}${h.classes} ${h.nouns} · ${h.strategy || "model"} · ${h.runtime}`;
  $("classes-title").textContent = `The ${h.classes} ${h.nouns} it knows`;
  $("explain-toggle").hidden = !h.explain;
  loadClasses();
});

async function loadClasses() {
  const response = await fetch("/classes");
  if (!response.ok) return;  // a token is needed first; asked for with the first photo
  const classes = await response.json();
  $("class-list").replaceChildren(...classes.map(c => {
    const item = document.createElement("li");
    item.textContent = c.label;
    return item;
  }));
}

function askForToken(file) {
  pending = file;
  tokenForm.hidden = false;
  $("token").focus();
}

tokenForm.addEventListener("submit", e => {
  e.preventDefault();
  const token = $("token").value.trim();
  document.cookie = `tlab_token=${encodeURIComponent(token)}; path=/; SameSite=Strict`;
  tokenForm.hidden = true;
  loadClasses();
  if (pending) send(pending);
});

function percent(p) { return `${(100 * p).toFixed(1)}%`; }

function showAnswer(answer) {
  const verdict = $("verdict");
  const top = answer.predictions[0];
  verdict.className = answer.not_sure ? "unsure" : "";
  verdict.textContent = answer.not_sure
    ? `Not sure. ${answer.not_sure.replace(/^not sure: /, "").replace(/^./, c => c.toUpperCase())}.`
    : `It looks like: ${top.label} (${percent(top.probability)})`;
  $("bars").replaceChildren(...answer.predictions.map((p, i) => {
    const item = document.createElement("li");
    const label = document.createElement("div"), track = document.createElement("div"), bar = document.createElement("div");
    label.className = i === 0 ? "label top" : "label";
    label.textContent = `${p.label} — ${percent(p.probability)}`;
    track.className = "track";
    track.setAttribute("aria-hidden", "true");
    bar.className = "bar";
    bar.style.width = `${100 * p.probability}%`;
    track.append(bar);
    item.append(label, track);
    return item;
  }));
}

async function showPhoto() {
  const preview = $("preview"), caption = $("caption");
  if (!current) return;
  if (!toggle.checked) {
    preview.src = current.url;
    preview.alt = `the photo sent: ${current.file.name}`;
    caption.textContent = current.file.name;
    return;
  }
  if (!overlays.has(current.url)) {
    caption.textContent = "computing the heatmap…";
    const body = new FormData();
    body.append("files", current.file, current.file.name);
    const response = await fetch("/explain", { method: "POST", body });
    if (!response.ok) {
      const answer = await response.json().catch(() => ({ detail: `the heatmap failed (${response.status})` }));
      error.textContent = answer.detail;
      caption.textContent = current.file.name;
      return;
    }
    overlays.set(current.url, URL.createObjectURL(await response.blob()));
  }
  preview.src = overlays.get(current.url);
  preview.alt = `where the model looked in ${current.file.name} for ${current.top}: red spoke most for it`;
  caption.textContent = `Grad-CAM for ${current.top}: red marks what spoke most for it`;
}

async function send(file) {
  error.textContent = "";
  const body = new FormData();
  body.append("files", file, file.name);
  const response = await fetch("/predict?top_k=5", { method: "POST", body });
  if (response.status === 401) { askForToken(file); return; }
  const answer = await response.json();
  if (!response.ok) { error.textContent = answer.detail; return; }
  if (current) URL.revokeObjectURL(current.url);
  overlays = new Map();
  current = { file, url: URL.createObjectURL(file), top: answer[0].predictions[0].label };
  showAnswer(answer[0]);
  $("result").hidden = false;
  await showPhoto();
}

toggle.addEventListener("change", showPhoto);
input.addEventListener("change", () => input.files[0] && send(input.files[0]));
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over"); e.dataTransfer.files[0] && send(e.dataTransfer.files[0]); });
