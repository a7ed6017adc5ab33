"use strict";
const drop = document.getElementById("drop"), input = document.getElementById("file");
const tokenForm = document.getElementById("token-form"), error = document.getElementById("error");
let pending = null;

fetch("/health").then(r => r.json()).then(h => {
  const data = h.data ? `${h.data} · ` : "";
  document.getElementById("model").textContent = `${data}${h.classes} ${h.nouns} · ${h.strategy || "model"} · ${h.runtime}`;
  if (h.data) document.title = `transferlab: ${h.data}`;
});

function askForToken(file) {
  pending = file;
  tokenForm.hidden = false;
  document.getElementById("token").focus();
}

tokenForm.addEventListener("submit", e => {
  e.preventDefault();
  const token = document.getElementById("token").value.trim();
  document.cookie = `tlab_token=${encodeURIComponent(token)}; path=/; SameSite=Strict`;
  tokenForm.hidden = true;
  if (pending) send(pending);
});

async function send(file) {
  error.textContent = "";
  const body = new FormData();
  body.append("files", file, file.name);
  const response = await fetch("/predict?top_k=5", { method: "POST", body });
  if (response.status === 401) { askForToken(file); return; }
  const answer = await response.json();
  if (!response.ok) { error.textContent = answer.detail; return; }
  document.getElementById("preview").src = URL.createObjectURL(file);
  const bars = document.getElementById("bars");
  bars.replaceChildren(...answer[0].predictions.map((p, i) => {
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("div"), bar = document.createElement("div");
    label.className = i === 0 ? "label top" : "label";
    label.textContent = `${p.label} — ${(100 * p.probability).toFixed(1)}%`;
    bar.className = "bar";
    bar.style.width = `${Math.max(2, 300 * p.probability)}px`;
    row.append(label, bar);
    return row;
  }));
  document.getElementById("result").hidden = false;
}

input.addEventListener("change", () => input.files[0] && send(input.files[0]));
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over"); e.dataTransfer.files[0] && send(e.dataTransfer.files[0]); });
