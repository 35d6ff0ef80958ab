// Every request of the page goes through api(): it sends the API key kept in localStorage and asks
// for one when the server answers 401. readLines() reads an NDJSON answer line by line as it comes.

import { $, el } from "./format.js";

const KEY_STORAGE = "dsocr.apiKey";
const dialog = {
  box: $("key-dialog"), reason: $("key-reason"), input: $("key-input"), forget: $("key-forget"), button: $("key-button"),
};

export const keyState = { declined: false };

function savedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

let memoryKey = savedKey();
let keyPrompt = null;

function storeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage may be disabled (private mode): the key then lasts as long as the page
  }
  memoryKey = key;
  dialog.button.hidden = !key && !keyState.declined;
}

export function askForKey(reason) {
  if (keyPrompt) return keyPrompt;
  keyPrompt = new Promise((resolve) => {
    dialog.reason.textContent = reason;
    dialog.input.value = "";
    dialog.forget.hidden = !memoryKey;
    dialog.box.addEventListener("close", () => {
      keyPrompt = null;
      const key = dialog.input.value.trim();
      if (dialog.box.returnValue === "save" && key) {
        keyState.declined = false;
        storeKey(key);
        resolve(true);
      } else {
        if (dialog.box.returnValue !== "forget") keyState.declined = true;
        dialog.button.hidden = false;
        resolve(false);
      }
    }, { once: true });
    dialog.box.returnValue = "";
    dialog.box.showModal();
    dialog.input.focus();
  });
  return keyPrompt;
}

export function wireKey(onNewKey) {
  dialog.button.hidden = !memoryKey;
  dialog.button.addEventListener("click", async () => {
    if (await askForKey(memoryKey ? "Change or forget the saved key." : "Enter the server's API key.")) onNewKey();
  });
  dialog.forget.addEventListener("click", () => {
    storeKey("");
    dialog.box.close("forget");
  });
}

// fetch with the saved key; on 401, ask for a key (when interactive) and try once more
export async function api(path, options = {}, { interactive = true, timeoutMs = 0 } = {}) {
  const send = () => {
    const headers = new Headers(options.headers || {});
    if (memoryKey) headers.set("Authorization", `Bearer ${memoryKey}`);
    const signal = timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined;
    return fetch(path, { ...options, headers, cache: "no-store", signal });
  };
  const response = await send();
  if (response.status !== 401 || !interactive) return response;
  const reason = memoryKey ? "The server did not accept the saved key." : "This server asks for an API key.";
  return (await askForKey(reason)) ? send() : response;
}

export async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

// calls onLine(object) for each line of an NDJSON body as it arrives
export async function readLines(response, onLine) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += value;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) onLine(JSON.parse(line));
    }
    if (done) break;
  }
  if (buffer.trim()) onLine(JSON.parse(buffer));
}

export function errorNode(prefix, status, message, requestId) {
  const parts = [el("strong", { textContent: `${prefix}: HTTP ${status}` }), ` · ${message || "no details"}`];
  if (status === 401) parts.push(" (use “API key” below to enter one)");
  if (requestId) parts.push(el("span", { className: "small", textContent: ` · request ${requestId}` }));
  return parts;
}

export function responseError(prefix, response, body) {
  const message = (body && (body.error || body.message)) || response.statusText;
  return errorNode(prefix, response.status, message, body && body.request_id);
}
