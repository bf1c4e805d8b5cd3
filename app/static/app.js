// The page: choose, drop or paste images; each one gets a card that fills in as its
// answer arrives.
//
// Several images are sent as parallel POST /classify calls (at most MAX_IN_FLIGHT at a
// time), not as one /classify/batch call: the batch endpoint answers once every image
// is done, so the first card would wait for the slowest. The service's dynamic batcher
// groups concurrent requests into one inference anyway, so nothing is lost in speed,
// and each image gets its own error, body limit and timeout.

import { ApiError, classify, hasApiKey, listModels, setApiKey } from "./api.js";
import { Card } from "./cards.js";

const MAX_IN_FLIGHT = 4;
const $ = (id) => document.getElementById(id);
const ui = {
  warnings: $("warnings"),
  warningList: $("warning-list"),
  keyForm: $("key-form"),
  keyInput: $("api-key"),
  model: $("model"),
  topK: $("top-k"),
  status: $("model-status"),
  choose: $("choose"),
  files: $("files"),
  cards: $("cards"),
};

const keyRequired = document.body.dataset.apiKey === "required";
const cards = [];
const queue = [];
const warnings = new Set();
let models = [];
let selected = null;
let inFlight = 0;

function topK() {
  const max = selected ? selected.num_classes : 1000;
  const value = Math.min(Math.max(Number.parseInt(ui.topK.value, 10) || 5, 1), max);
  ui.topK.value = String(value);
  return value;
}

function showWarnings(list) {
  for (const warning of list || []) warnings.add(warning);
  ui.warningList.replaceChildren(
    ...[...warnings].map((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }),
  );
  ui.warnings.hidden = warnings.size === 0;
}

function askForKey(reason) {
  ui.keyForm.hidden = false;
  if (reason) ui.status.textContent = reason;
  ui.keyInput.focus();
}

// (Re)send a card's image with the current model and top_k, or hold it until we can.
function schedule(card) {
  card.run += 1;
  const k = topK();
  card.waiting = (keyRequired && !hasApiKey()) || selected === null;
  if (keyRequired && !hasApiKey()) {
    card.showPending(k, "Waiting for the API key");
    askForKey();
  } else if (selected === null) {
    card.showPending(k, "Waiting for the model list");
  } else {
    card.showPending(k, "Classifying\u2026");
    queue.push(card);
    pump();
  }
}

function pump() {
  while (inFlight < MAX_IN_FLIGHT && queue.length > 0) send(queue.shift());
}

async function send(card) {
  const run = card.run;
  inFlight += 1;
  try {
    const result = await classify(card.file, selected, topK());
    if (run !== card.run) return;
    card.showResult(result);
    showWarnings(result.warnings);
  } catch (err) {
    if (run !== card.run) return;
    const error = err instanceof ApiError ? err : new ApiError(0, "page_error", String(err));
    card.showError(error);
    if (error.status === 401) askForKey("The service refused the API key: enter it again.");
  } finally {
    inFlight -= 1;
    pump();
  }
}

function addFiles(files) {
  const fresh = Array.from(files, (file) => new Card(file));
  if (fresh.length === 0) return;
  for (const card of fresh) card.onRetry(schedule);
  ui.cards.prepend(...fresh.map((card) => card.element));
  cards.unshift(...fresh);
  for (const card of fresh) schedule(card);
}

function selectModel(index) {
  selected = models[index];
  warnings.clear();
  showWarnings(selected.warnings);
  ui.topK.max = String(selected.num_classes);
}

function fillModels(list) {
  models = list;
  const options = list.map((model, index) => {
    const option = document.createElement("option");
    const version = model.version == null ? "" : ` v${model.version}`;
    const notes = [
      model.default && model.latest ? "default" : "",
      model.ready === false ? "loading" : "",
    ].filter(Boolean);
    option.textContent = `${model.name}${version}${notes.length ? ` (${notes.join(", ")})` : ""}`;
    option.value = String(index);
    option.disabled = model.ready === false;
    return option;
  });
  ui.model.replaceChildren(...options);
  // What a request without model and version gets: the default model's latest version.
  const chosen = Math.max(
    list.findIndex((model) => model.default && model.latest),
    list.findIndex((model) => model.default),
    0,
  );
  ui.model.value = String(chosen);
  ui.model.disabled = false;
  selectModel(chosen);
}

async function loadModels() {
  ui.status.textContent = "Loading the model list\u2026";
  try {
    fillModels(await listModels());
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.status === 401) {
      askForKey("The model list needs the API key.");
    } else if (err.status === 503 || err.status === 0) {
      const wait = err.retryAfterS || 2;
      ui.status.textContent = `The service is not ready (${err.message}); trying again in ${wait} s.`;
      setTimeout(loadModels, wait * 1000);
    } else {
      ui.status.textContent = `Could not load the model list: ${err.code}: ${err.message}`;
    }
    return;
  }
  ui.status.textContent = "";
  resume();
}

// Send the images that were held for the key or the model list, and those the
// service refused for want of the key.
function resume() {
  for (const card of cards) {
    if (card.waiting || (card.error && card.error.status === 401)) schedule(card);
  }
}

function rerunAll() {
  for (const card of cards) schedule(card);
}

ui.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey(ui.keyInput.value.trim());
  ui.keyInput.value = "";
  ui.keyForm.hidden = true;
  ui.status.textContent = "";
  ui.choose.focus();
  if (selected === null) loadModels();
  else resume();
});
ui.model.addEventListener("change", () => {
  selectModel(Number(ui.model.value));
  rerunAll();
});
ui.topK.addEventListener("change", rerunAll);
ui.choose.addEventListener("click", () => ui.files.click());
ui.files.addEventListener("change", () => {
  addFiles(ui.files.files);
  ui.files.value = "";
});

let dragDepth = 0;
document.addEventListener("dragenter", (event) => {
  event.preventDefault();
  dragDepth += 1;
  document.body.classList.add("dragging");
});
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(dragDepth - 1, 0);
  if (dragDepth === 0) document.body.classList.remove("dragging");
});
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  document.body.classList.remove("dragging");
  addFiles(event.dataTransfer.files);
});
document.addEventListener("paste", (event) => {
  const files = event.clipboardData ? event.clipboardData.files : [];
  if (files.length > 0) {
    event.preventDefault();
    addFiles(files);
  }
});

if (keyRequired) {
  askForKey();
} else {
  loadModels();
}
