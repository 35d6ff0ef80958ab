// dsocr web page: send an image to /ocr, show its text and boxes, watch and steer the models.
// A plain ES module with no dependencies and no build step. Every request goes through api(), which
// sends the API key kept in localStorage and asks for one when the server answers 401.

const $ = (id) => document.getElementById(id);

const KEY_STORAGE = "dsocr.apiKey";
const POLL_MS = 2000;
const GIB = 2 ** 30;
const TIMING_LABELS = {
  engine_s: "Engine", infer_s: "Inference", decode_s: "Decode", load_s: "Load", restore_s: "Restore",
  queue_s: "Queue", prepare_s: "Prepare", generate_s: "Generate",
};
const STATE_TONES = {
  resident: "ok", cached: "info", unloaded: "", loading: "warn", restoring: "warn", offloading: "warn",
  releasing: "warn",
};
const LOCATION_TEXT = { gpu: "GPU", cpu: "CPU", unloaded: "Not loaded" };

const els = {
  form: $("ocr-form"), file: $("file"), drop: $("drop"), preview: $("preview"), stage: $("stage"),
  img: $("preview-img"), canvas: $("boxes"), noPreview: $("no-preview"), noPreviewText: $("no-preview-text"),
  caption: $("box-caption"), fileName: $("file-name"), showBoxes: $("show-boxes"), changeFile: $("change-file"),
  model: $("model"), promptType: $("prompt-type"), findField: $("find-field"), findTerm: $("find-term"),
  promptField: $("prompt-field"), customPrompt: $("custom-prompt"), run: $("run"), runState: $("run-state"),
  copy: $("copy"), download: $("download"), downloadJson: $("download-json"), error: $("error"), empty: $("empty"),
  text: $("text"), timing: $("timing"), boxesList: $("boxes-list"), boxCount: $("box-count"), lines: $("lines"),
  live: $("live"), liveText: $("live-text"), serviceLine: $("service-line"), statusError: $("status-error"),
  models: $("models"), actionNote: $("action-note"), modelTemplate: $("model-template"),
  keyButton: $("key-button"), keyDialog: $("key-dialog"), keyForm: $("key-form"), keyReason: $("key-reason"),
  keyInput: $("key-input"), keyForget: $("key-forget"),
};

const state = {
  file: null,
  previewUrl: null,
  result: null,
  boxes: [],
  dims: null,
  active: -1,
  busy: false,
  status: null,
  cards: new Map(),
  keyDeclined: false,
};

// -- formatting -------------------------------------------------------------------------------

function fmtBytes(n) {
  if (!Number.isFinite(n) || n <= 0) return "0 B";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

function fmtSeconds(s) {
  if (!Number.isFinite(s)) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

function fillFacts(dl, facts) {
  dl.replaceChildren(...facts.map(([term, value, title]) => {
    const dd = el("dd", { textContent: value });
    if (title) dd.title = title;
    return el("div", {}, el("dt", { textContent: term }), dd);
  }));
}

// -- API and the key ------------------------------------------------------------------------

function savedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

function storeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage may be disabled (private mode): the key then lasts as long as the page
  }
  memoryKey = key;
  els.keyButton.hidden = !key && !state.keyDeclined;
}

let memoryKey = savedKey();
let keyPrompt = null;

function askForKey(reason) {
  if (keyPrompt) return keyPrompt;
  keyPrompt = new Promise((resolve) => {
    els.keyReason.textContent = reason;
    els.keyInput.value = "";
    els.keyForget.hidden = !memoryKey;
    els.keyDialog.addEventListener("close", () => {
      keyPrompt = null;
      const key = els.keyInput.value.trim();
      if (els.keyDialog.returnValue === "save" && key) {
        state.keyDeclined = false;
        storeKey(key);
        resolve(true);
      } else {
        if (els.keyDialog.returnValue !== "forget") state.keyDeclined = true;
        els.keyButton.hidden = false;
        resolve(false);
      }
    }, { once: true });
    els.keyDialog.returnValue = "";
    els.keyDialog.showModal();
    els.keyInput.focus();
  });
  return keyPrompt;
}

// fetch with the saved key; on 401, ask for a key (when interactive) and try once more
async function api(path, options = {}, { interactive = true } = {}) {
  const send = () => {
    const headers = new Headers(options.headers || {});
    if (memoryKey) headers.set("Authorization", `Bearer ${memoryKey}`);
    return fetch(path, { ...options, headers, cache: "no-store" });
  };
  const response = await send();
  if (response.status !== 401 || !interactive) return response;
  const reason = memoryKey ? "The server did not accept the saved key." : "This server asks for an API key.";
  return (await askForKey(reason)) ? send() : response;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function errorNode(prefix, response, body) {
  const message = (body && (body.error || body.message)) || response.statusText || "no details";
  const parts = [el("strong", { textContent: `${prefix}: HTTP ${response.status}` }), ` · ${message}`];
  if (response.status === 401) parts.push(" (use “API key” below to enter one)");
  if (body && body.request_id) parts.push(el("span", { className: "small", textContent: ` · request ${body.request_id}` }));
  return parts;
}

// -- the file ---------------------------------------------------------------------------------

function isPdf(file) {
  return file.type === "application/pdf" || /\.pdf$/i.test(file.name || "");
}

function setFile(file) {
  if (!file) return;
  state.file = file;
  clearResult();
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  els.drop.hidden = true;
  els.preview.hidden = false;
  els.fileName.textContent = `${file.name || "pasted image"} · ${fmtBytes(file.size)}`;
  els.fileName.title = file.name || "";
  if (isPdf(file)) {
    showNoPreview("PDF document: no preview here; the server reads its pages");
  } else {
    els.stage.hidden = false;
    els.noPreview.hidden = true;
    state.previewUrl = URL.createObjectURL(file);
    els.img.src = state.previewUrl;
  }
  const known = !file.type || file.type.startsWith("image/") || isPdf(file);
  setRunState(known ? "Ready: choose a task and read." : "This does not look like an image; the server will say if it cannot read it.");
  els.run.disabled = state.busy;
}

function showNoPreview(text) {
  els.stage.hidden = true;
  els.noPreview.hidden = false;
  els.noPreviewText.textContent = text;
}

function firstFile(list) {
  return list && list.length ? list[0] : null;
}

function setRunState(text) {
  els.runState.textContent = text;
}

// -- OCR --------------------------------------------------------------------------------------

function clearResult() {
  state.result = null;
  state.boxes = [];
  state.dims = null;
  state.active = -1;
  els.error.hidden = true;
  els.text.hidden = true;
  els.text.textContent = "";
  els.timing.hidden = true;
  els.boxesList.hidden = true;
  els.empty.hidden = false;
  els.empty.textContent = "The recognized text appears here.";
  els.caption.textContent = "";
  for (const button of [els.copy, els.download, els.downloadJson]) button.disabled = true;
  drawBoxes();
}

function showError(...parts) {
  els.error.replaceChildren(...parts);
  els.error.hidden = false;
  els.empty.hidden = true;
}

function validate() {
  const type = els.promptType.value;
  if (type === "find" && !els.findTerm.value.trim()) return [els.findTerm, "Enter the term to find."];
  if (type === "freeform" && !els.customPrompt.value.trim()) return [els.customPrompt, "Enter a prompt."];
  return null;
}

async function runOcr(event) {
  event.preventDefault();
  if (!state.file || state.busy) return;
  const invalid = validate();
  if (invalid) {
    showError(invalid[1]);
    invalid[0].focus();
    return;
  }
  const type = els.promptType.value;
  const form = new FormData();
  form.append("file", state.file, state.file.name || "pasted.png");
  form.append("prompt_type", type);
  if (els.model.value) form.append("model", els.model.value);
  if (type === "find") form.append("find_term", els.findTerm.value.trim());
  if (type === "freeform") form.append("custom_prompt", els.customPrompt.value.trim());

  clearResult();
  setBusy(true);
  setRunState("Reading…");
  const started = performance.now();
  // the clock ticks on the button, not in the live region, so screen readers hear "Reading…" once
  const ticker = setInterval(() => {
    els.run.textContent = `Reading… ${fmtSeconds((performance.now() - started) / 1000)}`;
  }, 100);
  pollSoon();
  try {
    const response = await api("ocr", { method: "POST", body: form });
    const body = await readJson(response);
    const roundTrip = (performance.now() - started) / 1000;
    if (!response.ok || !body || body.success === false) {
      showError(...errorNode("The server could not read this file", response, body));
      setRunState(`Failed after ${fmtSeconds(roundTrip)}.`);
    } else {
      showResult(body, roundTrip);
      setRunState(`Done in ${fmtSeconds(roundTrip)}.`);
    }
  } catch (err) {
    showError(el("strong", { textContent: "No answer from the server" }), ` · ${err.message || err}`);
    setRunState("Failed.");
  } finally {
    clearInterval(ticker);
    setBusy(false);
    pollSoon();
  }
}

function setBusy(busy) {
  state.busy = busy;
  els.run.disabled = busy || !state.file;
  els.run.textContent = busy ? "Reading…" : "Read text";
  if (busy) els.run.setAttribute("aria-busy", "true");
  else els.run.removeAttribute("aria-busy");
}

function showResult(body, roundTrip) {
  state.result = body;
  const text = body.text || "";
  els.empty.hidden = Boolean(text);
  els.empty.textContent = "No text was found in this image.";
  els.text.hidden = !text;
  els.text.textContent = text;
  for (const button of [els.copy, els.download, els.downloadJson]) button.disabled = false;
  els.copy.disabled = !text;
  els.download.disabled = !text;

  const meta = body.metadata || {};
  const facts = [["Round trip", fmtSeconds(roundTrip), "measured in this browser"]];
  for (const [key, value] of Object.entries(meta.timing || {})) {
    if (typeof value === "number") facts.push([TIMING_LABELS[key] || key.replace(/_s$/, ""), fmtSeconds(value)]);
  }
  if (meta.model) facts.push(["Model", `${meta.model} on ${meta.device || "?"}`]);
  if (Array.isArray(body.pages)) facts.push(["Pages", String(body.pages.length)]);
  else if (body.image_dims) facts.push(["Image", `${body.image_dims.w} × ${body.image_dims.h} px`]);
  if (Number.isFinite(meta.size_bytes)) facts.push(["Upload", fmtBytes(meta.size_bytes)]);
  fillFacts(els.timing, facts);
  els.timing.hidden = false;

  state.dims = body.image_dims && body.image_dims.w > 0 && body.image_dims.h > 0 ? body.image_dims : null;
  state.boxes = (body.boxes || []).filter((b) => Array.isArray(b.box) && b.box.length === 4 && b.box.every(Number.isFinite));
  els.boxCount.textContent = `(${state.boxes.length})`;
  els.lines.replaceChildren(...state.boxes.map((b, i) => {
    const label = b.label || `box ${i + 1}`;
    const item = el("li", { tabIndex: 0, textContent: b.page ? `page ${b.page} · ${label}` : label });
    item.dataset.index = String(i);
    return item;
  }));
  els.boxesList.hidden = state.boxes.length === 0;
  drawBoxes();
}

function baseName() {
  const name = (state.file && state.file.name) || "result";
  return name.replace(/\.[^.]+$/, "") || "result";
}

function downloadBlob(name, content, type) {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function flash(button, text) {
  const original = button.dataset.label || button.textContent;
  button.dataset.label = original;
  button.textContent = text;
  setTimeout(() => { button.textContent = original; }, 1500);
}

async function copyText() {
  const text = (state.result && state.result.text) || "";
  try {
    await navigator.clipboard.writeText(text);
    flash(els.copy, "Copied ✓");
  } catch {
    // the clipboard API needs a secure context; plain http on the LAN falls back to a selection
    const range = document.createRange();
    range.selectNodeContents(els.text);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    flash(els.copy, document.execCommand("copy") ? "Copied ✓" : "Press Ctrl+C");
  }
}

// -- boxes --------------------------------------------------------------------------------------

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function drawBoxes() {
  const { canvas, img } = els;
  const width = img.clientWidth;
  const height = img.clientHeight;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(width * ratio));
  canvas.height = Math.max(1, Math.round(height * ratio));
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  if (!els.showBoxes.checked || !state.dims || !state.boxes.length || !width || !height) return;
  const sx = width / state.dims.w;
  const sy = height / state.dims.h;
  const colors = {
    stroke: cssVar("--box"), fill: cssVar("--box-fill"), hi: cssVar("--box-hi"), hiFill: cssVar("--box-hi-fill"),
  };
  const order = state.boxes.map((_, i) => i).filter((i) => i !== state.active);
  if (state.active >= 0) order.push(state.active); // the highlighted box on top
  for (const i of order) {
    const [x1, y1, x2, y2] = state.boxes[i].box;
    const active = i === state.active;
    const x = x1 * sx;
    const y = y1 * sy;
    const w = Math.max(1, (x2 - x1) * sx);
    const h = Math.max(1, (y2 - y1) * sy);
    ctx.fillStyle = active ? colors.hiFill : colors.fill;
    ctx.fillRect(x, y, w, h);
    ctx.lineWidth = active ? 2.5 : 1.5;
    ctx.strokeStyle = active ? colors.hi : colors.stroke;
    ctx.strokeRect(x, y, w, h);
  }
}

function setActive(index) {
  if (index === state.active) return;
  state.active = index;
  for (const item of els.lines.children) item.classList.toggle("active", Number(item.dataset.index) === index);
  const box = state.boxes[index];
  els.caption.textContent = box ? `${index + 1}. ${box.label || ""} [${box.box.join(", ")}]` : "";
  drawBoxes();
}

function boxAt(event) {
  if (!state.dims || !state.boxes.length || !els.showBoxes.checked) return -1;
  const rect = els.canvas.getBoundingClientRect();
  const x = ((event.clientX - rect.left) / rect.width) * state.dims.w;
  const y = ((event.clientY - rect.top) / rect.height) * state.dims.h;
  let best = -1;
  let bestArea = Infinity;
  state.boxes.forEach((b, i) => {
    const [x1, y1, x2, y2] = b.box;
    const area = (x2 - x1) * (y2 - y1);
    if (x >= x1 && x <= x2 && y >= y1 && y <= y2 && area < bestArea) {
      best = i;
      bestArea = area;
    }
  });
  return best;
}

// -- model state --------------------------------------------------------------------------------

let polling = false;
let pollAgain = false;
let pollTimer = 0;

function pollSoon() {
  clearTimeout(pollTimer);
  if (polling) pollAgain = true;
  else poll();
}

async function poll() {
  clearTimeout(pollTimer);
  if (document.hidden) return; // resumed on visibilitychange
  polling = true;
  try {
    const response = await api("gpu/status", {}, { interactive: !state.keyDeclined });
    const body = await readJson(response);
    if (response.ok && body) {
      els.statusError.hidden = true;
      renderStatus(body);
    } else {
      els.statusError.replaceChildren(...errorNode("Status unavailable", response, body));
      els.statusError.hidden = false;
      setLive("danger", response.status === 401 ? "API key needed" : `HTTP ${response.status}`);
    }
  } catch {
    els.statusError.textContent = "The server does not answer; trying again every 2 seconds.";
    els.statusError.hidden = false;
    setLive("danger", "Server unreachable");
  } finally {
    polling = false;
    const again = pollAgain;
    pollAgain = false;
    if (again) poll();
    else pollTimer = setTimeout(poll, POLL_MS);
  }
}

function setLive(tone, text) {
  els.live.dataset.tone = tone;
  if (els.liveText.textContent !== text) els.liveText.textContent = text; // a live region: only changes
}

function renderStatus(body) {
  state.status = body;
  const models = Array.isArray(body.models) && body.models.length ? body.models : [body];
  syncModelSelect(models);

  const shown = models.find((m) => m.model === els.model.value) || models[0];
  const where = shown.model_location === "unloaded" ? "not loaded" : `on the ${LOCATION_TEXT[shown.model_location] || shown.model_location}`;
  setLive(STATE_TONES[shown.state] || "", `${shown.model}: ${shown.state}, ${where}`);

  const device = body.gpu ? `${body.device} · GPU ${body.gpu.index}, ${body.gpu.name}` : body.device;
  const idle = body.timeout > 0 ? `offload after ${fmtSeconds(body.timeout)} idle` : "no idle offload";
  els.serviceLine.textContent = [device, idle].filter(Boolean).join(" · ");

  const seen = new Set();
  for (const m of models) {
    seen.add(m.model);
    let card = state.cards.get(m.model);
    if (!card) {
      card = els.modelTemplate.content.firstElementChild.cloneNode(true);
      card.querySelector(".model-name").textContent = m.model;
      for (const button of card.querySelectorAll("button[data-action]")) {
        button.addEventListener("click", () => control(button.dataset.action, m.model, button));
      }
      state.cards.set(m.model, card);
      els.models.append(card);
    }
    updateCard(card, m);
  }
  for (const [name, card] of state.cards) {
    if (!seen.has(name)) {
      card.remove();
      state.cards.delete(name);
    }
  }
}

function updateCard(card, m) {
  const badge = card.querySelector(".badge");
  badge.textContent = m.state;
  badge.dataset.tone = STATE_TONES[m.state] || "";
  const cuda = m.backend === "cuda";
  let engine = m.engine_pid ? `pid ${m.engine_pid}` : "not running";
  if (m.standby_pid) engine += ` (standby pid ${m.standby_pid})`;
  const facts = [
    ["Location", LOCATION_TEXT[m.model_location] || m.model_location],
    ["Idle", m.queue_depth ? "working" : fmtSeconds(m.idle_time)],
    ["Engine", engine],
    ["Shared memory", fmtBytes(m.shared_memory_bytes)],
    cuda
      ? ["GPU memory", `${fmtBytes(m.gpu_memory_allocated * GIB)} allocated, ${fmtBytes(m.gpu_memory_reserved * GIB)} reserved`,
          "what the engine's PyTorch allocator holds"]
      : ["GPU memory", "none (CPU)"],
  ];
  if (cuda) facts.push(["Engine on the GPU", fmtBytes(m.engine_gpu_memory_bytes), "everything NVML sees for the engine process, CUDA context included"]);
  facts.push(["Queue", String(m.queue_depth ?? 0)], ["Device", m.device]);
  fillFacts(card.querySelector(".model-facts"), facts);

  const offload = card.querySelector('[data-action="offload"]');
  const release = card.querySelector('[data-action="release"]');
  if (!offload.hasAttribute("aria-busy")) offload.disabled = m.state !== "resident";
  if (!release.hasAttribute("aria-busy")) release.disabled = m.state === "unloaded" && !m.engine_pid && !m.standby_pid;
}

function syncModelSelect(models) {
  const names = models.map((m) => m.model);
  const current = [...els.model.options].map((o) => o.value);
  if (names.join("\n") !== current.join("\n")) {
    const selected = els.model.value;
    els.model.replaceChildren(...names.map((name, i) => el("option", { value: name, textContent: i === 0 ? `${name} (default)` : name })));
    if (names.includes(selected)) els.model.value = selected;
  }
  syncPromptTypes(models.find((m) => m.model === els.model.value));
}

// a server that lists each model's prompt types lets the page grey out the others
function syncPromptTypes(model) {
  const allowed = model && Array.isArray(model.prompt_types) ? new Set(model.prompt_types) : null;
  for (const option of els.promptType.options) option.disabled = Boolean(allowed) && !allowed.has(option.value);
  if (els.promptType.selectedOptions[0] && els.promptType.selectedOptions[0].disabled) {
    els.promptType.value = [...els.promptType.options].find((o) => !o.disabled)?.value || "ocr";
    syncPromptFields();
  }
}

function syncPromptFields() {
  els.findField.hidden = els.promptType.value !== "find";
  els.promptField.hidden = els.promptType.value !== "freeform";
}

async function control(action, model, button) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  els.actionNote.textContent = `${action === "offload" ? "Offloading" : "Releasing"} ${model}…`;
  try {
    const response = await api(`gpu/${action}?model=${encodeURIComponent(model)}`, { method: "POST" });
    const body = await readJson(response);
    if (response.ok && body) els.actionNote.textContent = body.message || body.status || "Done.";
    else els.actionNote.replaceChildren(...errorNode(`${action} failed`, response, body));
  } catch (err) {
    els.actionNote.textContent = `${action} failed: the server does not answer (${err.message || err}).`;
  } finally {
    button.removeAttribute("aria-busy");
    pollSoon();
  }
}

// -- wiring ---------------------------------------------------------------------------------

function wire() {
  els.file.addEventListener("change", () => setFile(firstFile(els.file.files)));
  els.changeFile.addEventListener("click", () => els.file.click());
  els.form.addEventListener("submit", runOcr);
  els.promptType.addEventListener("change", syncPromptFields);
  els.model.addEventListener("change", () => {
    if (state.status) renderStatus(state.status);
  });
  els.showBoxes.addEventListener("change", drawBoxes);
  els.img.addEventListener("load", drawBoxes);
  els.img.addEventListener("error", () => {
    if (state.previewUrl) showNoPreview("No preview for this format; the server can still read it");
  });
  new ResizeObserver(drawBoxes).observe(els.img);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", drawBoxes);

  els.canvas.addEventListener("pointermove", (event) => setActive(boxAt(event)));
  els.canvas.addEventListener("pointerdown", (event) => setActive(boxAt(event)));
  els.canvas.addEventListener("pointerleave", () => setActive(-1));
  for (const type of ["mouseover", "focusin"]) {
    els.lines.addEventListener(type, (event) => {
      const item = event.target.closest("li");
      if (item) setActive(Number(item.dataset.index));
    });
  }
  els.lines.addEventListener("mouseleave", () => setActive(-1));
  els.lines.addEventListener("focusout", () => setActive(-1));

  els.copy.addEventListener("click", copyText);
  els.download.addEventListener("click", () => {
    const markdown = state.result && state.result.prompt_type === "document";
    downloadBlob(`${baseName()}.${markdown ? "md" : "txt"}`, state.result.text || "", "text/plain;charset=utf-8");
  });
  els.downloadJson.addEventListener("click", () => {
    downloadBlob(`${baseName()}.json`, JSON.stringify(state.result, null, 2), "application/json");
  });

  // drop anywhere on the page; a file dropped outside the zone must not navigate away
  let depth = 0;
  const dragging = (on) => {
    els.drop.classList.toggle("dragging", on);
    els.preview.classList.toggle("dragging", on);
  };
  document.addEventListener("dragenter", (event) => {
    if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
    depth += 1;
    dragging(true);
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) dragging(false);
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    dragging(false);
    const file = firstFile(event.dataTransfer?.files);
    if (file) setFile(file);
  });
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/") || isPdf(f));
    if (file) setFile(file);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !els.run.disabled) els.form.requestSubmit();
  });

  els.keyButton.hidden = !memoryKey;
  els.keyButton.addEventListener("click", async () => {
    if (await askForKey(memoryKey ? "Change or forget the saved key." : "Enter the server's API key.")) pollSoon();
  });
  els.keyForget.addEventListener("click", () => {
    storeKey("");
    els.keyDialog.close("forget");
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) pollSoon();
  });
}

wire();
syncPromptFields();
poll();
