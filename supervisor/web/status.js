// The model state card: /gpu/status polled every 2 s (every second while a file is read), one card per
// model with Offload, Stop engine and Release, and the task list of the chosen model (known before it
// loads: the server reads it from the model catalog). An unreachable server greys the cards out.

import { $, el, fillFacts, fmtBytes, fmtSeconds } from "./format.js";
import { api, keyState, readJson, responseError } from "./api.js";

const POLL_MS = 2000;
const BUSY_POLL_MS = 1000;
const NOTE_MS = 10000;
const GIB = 2 ** 30;
const STATE_TONES = {
  resident: "ok", cached: "info", unloaded: "", loading: "warn", restoring: "warn", offloading: "warn",
  releasing: "warn", failed: "danger",
};
const LOCATION_TEXT = { gpu: "GPU", cpu: "CPU", unloaded: "Not loaded" };
const ACTION_WORDS = { offload: "Offloading", stop: "Stopping the engine of", release: "Releasing" };
// prompt type -> whether grounding is on unless asked otherwise (DeepSeek's defaults)
const GROUNDING_DEFAULT = { document: true, ocr: true };

const els = {
  model: $("model"), promptType: $("prompt-type"), findField: $("find-field"), promptField: $("prompt-field"),
  groundingField: $("grounding-field"), grounding: $("grounding"), taskNote: $("task-note"), live: $("live"), liveText: $("live-text"),
  serviceLine: $("service-line"), statusError: $("status-error"), models: $("models"), actionNote: $("action-note"),
  template: $("model-template"),
};

const status = { body: null, cards: new Map(), isBusy: () => false, unreachableSince: null };
let polling = false;
let pollAgain = false;
let pollTimer = 0;
let noteTimer = 0;

export function selectedModel() {
  const models = status.body ? modelsOf(status.body) : [];
  return models.find((m) => m.model === els.model.value) || models[0] || null;
}

function modelsOf(body) {
  return Array.isArray(body.models) && body.models.length ? body.models : [body];
}

export function pollSoon() {
  clearTimeout(pollTimer);
  if (polling) pollAgain = true;
  else poll();
}

async function poll() {
  clearTimeout(pollTimer);
  if (document.hidden) return; // resumed on visibilitychange
  polling = true;
  try {
    const response = await api("gpu/status", {}, { interactive: !keyState.declined, timeoutMs: 8000 });
    const body = await readJson(response);
    if (response.ok && body) {
      setReachable(true);
      els.statusError.hidden = true;
      render(body);
    } else {
      setReachable(true);
      els.statusError.replaceChildren(...responseError("Status unavailable", response, body));
      els.statusError.hidden = false;
      setLive("danger", response.status === 401 ? "API key needed" : `HTTP ${response.status}`);
    }
  } catch {
    setReachable(false);
  } finally {
    polling = false;
    const again = pollAgain;
    pollAgain = false;
    if (again) poll();
    else pollTimer = setTimeout(poll, status.isBusy() ? BUSY_POLL_MS : POLL_MS);
  }
}

function setReachable(reachable) {
  if (reachable) {
    status.unreachableSince = null;
    els.models.classList.remove("stale");
    return;
  }
  status.unreachableSince ??= new Date();
  const since = status.unreachableSince.toLocaleTimeString();
  els.statusError.textContent = `The server does not answer (since ${since}); the state below is the last one seen. Trying again every 2 seconds.`;
  els.statusError.hidden = false;
  els.models.classList.add("stale");
  for (const button of els.models.querySelectorAll("button[data-action]")) button.disabled = true;
  for (const badge of els.models.querySelectorAll(".badge")) {
    badge.textContent = "unreachable";
    badge.dataset.tone = "danger";
  }
  setLive("danger", "Server unreachable");
}

function setLive(tone, text) {
  els.live.dataset.tone = tone;
  if (els.liveText.textContent !== text) els.liveText.textContent = text; // a live region: only changes
}

function stateText(m) {
  if (m.state === "cached" && !m.engine_pid) return "cached, engine stopped";
  return m.state;
}

function render(body) {
  status.body = body;
  const models = modelsOf(body);
  syncModelSelect(models);

  const shown = selectedModel();
  const where = shown.model_location === "unloaded" ? "not loaded" : `on the ${LOCATION_TEXT[shown.model_location] || shown.model_location}`;
  setLive(STATE_TONES[shown.state] || "", `${shown.model}: ${stateText(shown)}, ${where}`);

  const device = body.gpu ? `${body.device} · GPU ${body.gpu.index}, ${body.gpu.name}` : body.device;
  const idle = body.timeout > 0 ? `offload after ${fmtSeconds(body.timeout)} idle` : "no idle offload";
  els.serviceLine.textContent = [device, idle].filter(Boolean).join(" · ");

  const seen = new Set();
  for (const m of models) {
    seen.add(m.model);
    let card = status.cards.get(m.model);
    if (!card) {
      card = els.template.content.firstElementChild.cloneNode(true);
      card.querySelector(".model-name").textContent = m.model;
      for (const button of card.querySelectorAll("button[data-action]")) {
        button.addEventListener("click", () => control(button.dataset.action, m.model, button));
      }
      status.cards.set(m.model, card);
      els.models.append(card);
    }
    updateCard(card, m);
  }
  for (const [name, card] of status.cards) {
    if (!seen.has(name)) {
      card.remove();
      status.cards.delete(name);
    }
  }
}

function updateCard(card, m) {
  const badge = card.querySelector(".badge");
  badge.textContent = stateText(m);
  badge.dataset.tone = STATE_TONES[m.state] || "";
  const cuda = m.backend === "cuda";
  const engine = m.engine_pid ? `pid ${m.engine_pid}` : "not running";
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

  const enabled = {
    offload: m.state === "resident",
    stop: Boolean(m.engine_pid),
    release: m.state !== "unloaded" || Boolean(m.engine_pid),
  };
  for (const [action, on] of Object.entries(enabled)) {
    const button = card.querySelector(`[data-action="${action}"]`);
    if (!button.hasAttribute("aria-busy")) button.disabled = !on;
  }
}

function syncModelSelect(models) {
  const names = models.map((m) => m.model);
  const current = [...els.model.options].map((o) => o.value);
  if (names.join("\n") !== current.join("\n")) {
    const selected = els.model.value;
    els.model.replaceChildren(...names.map((name, i) => el("option", { value: name, textContent: i === 0 ? `${name} (default)` : name })));
    if (names.includes(selected)) els.model.value = selected;
  }
  syncTasks();
}

// exactly the chosen model's tasks; a server without the catalog fields leaves every task open
export function syncTasks() {
  const model = selectedModel();
  const types = model && Array.isArray(model.prompt_types) && model.prompt_types.length ? new Set(model.prompt_types) : null;
  for (const option of els.promptType.options) {
    const off = Boolean(types) && !types.has(option.value);
    option.disabled = off;
    option.hidden = off;
  }
  if (els.promptType.selectedOptions[0]?.disabled) {
    els.promptType.value = [...els.promptType.options].find((o) => !o.disabled)?.value || "ocr";
    syncTaskFields(true);
  } else {
    syncTaskFields(false);
  }
}

// the find-term / prompt inputs and the grounding switch where the task takes them
export function syncTaskFields(taskChanged) {
  const model = selectedModel();
  const task = els.promptType.value;
  const findTypes = model?.find_term ?? ["find"];
  const promptTypes = model?.custom_prompt ?? ["freeform"];
  els.findField.hidden = !findTypes.includes(task);
  els.promptField.hidden = !promptTypes.includes(task);
  // what this task gives with this model, where the catalog says (ppocr's three read alike)
  const note = (model?.prompt_type_notes || {})[task] || "";
  els.taskNote.textContent = note;
  els.taskNote.hidden = !note;
  const grounding = Boolean(model?.grounding);
  if (grounding && (els.groundingField.hidden || taskChanged)) els.grounding.checked = Boolean(GROUNDING_DEFAULT[task]);
  els.groundingField.hidden = !grounding;
}

export function taskFields() {
  const fields = { prompt_type: els.promptType.value };
  if (els.model.value) fields.model = els.model.value;
  if (!els.findField.hidden) fields.find_term = $("find-term").value;
  if (!els.promptField.hidden) fields.custom_prompt = $("custom-prompt").value;
  if (!els.groundingField.hidden) fields.grounding = els.grounding.checked ? "true" : "false";
  return fields;
}

function note(parts) {
  clearTimeout(noteTimer);
  els.actionNote.replaceChildren(...parts);
  noteTimer = setTimeout(() => els.actionNote.replaceChildren(), NOTE_MS); // an old note would mislead
}

async function control(action, model, button) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  note([`${ACTION_WORDS[action]} ${model}…`]);
  try {
    const response = await api(`gpu/${action}?model=${encodeURIComponent(model)}`, { method: "POST" });
    const body = await readJson(response);
    if (response.ok && body) note([body.message || body.status || "Done."]);
    else note(responseError(`${action} failed`, response, body));
  } catch (err) {
    note([`${action} failed: the server does not answer (${err.message || err}).`]);
  } finally {
    button.removeAttribute("aria-busy");
    pollSoon();
  }
}

export function startStatus(isBusy) {
  status.isBusy = isBusy;
  els.promptType.addEventListener("change", () => syncTaskFields(true));
  els.model.addEventListener("change", () => (status.body ? render(status.body) : syncTasks()));
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) pollSoon();
  });
  syncTaskFields(true);
  poll();
}
