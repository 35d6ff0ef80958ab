// dsocr web page: a queue of images and PDFs read through /ocr/stream (one NDJSON line per page as it
// finishes), each shown with its boxes; PDFs as pages (thumbnails from /pdf-to-images); markdown
// shown as a document. Plain ES modules, no build step; results live in this tab only.

import { $, el, fillFacts, fmtBytes, fmtSeconds } from "./format.js";
import { wireDrop } from "./drop.js";
import { copyText, downloadAll, downloadJson, downloadText } from "./exports.js";
import { api, errorNode, readJson, readLines, responseError, wireKey } from "./api.js";
import { BoxLayer } from "./boxes.js";
import { fillFigures, renderMarkdown } from "./document.js";
import { pollSoon, startStatus, taskFields } from "./status.js";

const TIMING_LABELS = {
  engine_s: "Engine", infer_s: "Inference", decode_s: "Decode", load_s: "Load", restore_s: "Restore",
  queue_s: "Queue", prepare_s: "Prepare", generate_s: "Generate", batch: "Batch size",
};
const STATE_TEXT = { waiting: "waiting", reading: "reading…", done: "done", failed: "failed" };

const els = {
  form: $("ocr-form"), file: $("file"), drop: $("drop"), queue: $("queue"), clearQueue: $("clear-queue"),
  preview: $("preview"), thumbs: $("thumbs"), stage: $("stage"), img: $("preview-img"), canvas: $("boxes"),
  noPreview: $("no-preview"), noPreviewText: $("no-preview-text"), caption: $("box-caption"),
  fileName: $("file-name"), boxesSwitch: $("boxes-switch"), showBoxes: $("show-boxes"), addFiles: $("add-files"),
  run: $("run"), runState: $("run-state"),
  copy: $("copy"), download: $("download"), downloadJson: $("download-json"), error: $("error"), empty: $("empty"),
  progressRow: $("progress-row"), progress: $("progress"), progressText: $("progress-text"),
  viewRow: $("view-row"), scope: $("scope"), viewRendered: $("view-rendered"), viewRaw: $("view-raw"),
  doc: $("doc"), text: $("text"), timing: $("timing"), boxesList: $("boxes-list"), boxCount: $("box-count"),
  lines: $("lines"), batchRow: $("batch-row"), batchText: $("batch-text"), allJson: $("download-all-json"),
  allMd: $("download-all-md"),
};

const queue = [];
const view = { item: null, page: 1, scope: "all", mode: null };
const layer = new BoxLayer({ canvas: els.canvas, img: els.img, lines: els.lines, caption: els.caption, toggle: els.showBoxes });
let busy = false;
let nextId = 1;
let ticker = 0;

// -- the queue ----------------------------------------------------------------------------------

function isPdf(file) {
  return file.type === "application/pdf" || /\.pdf$/i.test(file.name || "");
}

function addFiles(list) {
  const files = [...(list || [])];
  if (!files.length) return;
  let first = null;
  for (const file of files) {
    const item = {
      id: nextId++, file, name: file.name || "pasted image", pdf: isPdf(file), state: "waiting", pages: [],
      pageCount: 0, done: null, error: null, thumbs: null, thumbsNote: "", previewUrl: null, fields: null,
      roundTrip: null, node: null,
    };
    if (!item.pdf) item.previewUrl = URL.createObjectURL(file);
    item.node = el("li", {}, el("button", { type: "button", className: "queue-item" }));
    item.node.firstChild.addEventListener("click", () => select(item));
    queue.push(item);
    els.queue.append(item.node);
    updateQueueItem(item);
    if (item.pdf) loadThumbs(item);
    first ??= item;
  }
  select(first);
  syncRun();
  if (!busy) setRunState(waitingText()); // replaces "Choose files…" or the last run's "Done in…"
}

function waitingText() {
  const waiting = queue.filter((item) => item.state === "waiting").length;
  if (!queue.length) return "Choose files to start.";
  return waiting ? `${waiting} ${waiting === 1 ? "file" : "files"} waiting to be read.` : "";
}

function updateQueueItem(item) {
  let state = STATE_TEXT[item.state];
  if (item.state === "reading" && item.pageCount) state = `page ${item.pages.filter(Boolean).length} of ${item.pageCount}`;
  if (item.state === "done" && item.roundTrip != null) state = `done · ${fmtSeconds(item.roundTrip)}`;
  const button = item.node.firstChild;
  button.replaceChildren(
    el("span", { className: "queue-name", textContent: item.name, title: item.name }),
    el("span", { className: "queue-state", textContent: state }),
  );
  item.node.dataset.state = item.state;
  button.setAttribute("aria-current", String(item === view.item));
}

function clearQueue() {
  if (busy) return;
  for (const item of queue) if (item.previewUrl) URL.revokeObjectURL(item.previewUrl);
  queue.length = 0;
  els.queue.replaceChildren();
  view.item = null;
  els.file.value = "";
  showItem();
  syncRun();
  setRunState(waitingText());
}

function syncRun() {
  const waiting = queue.filter((item) => item.state === "waiting").length;
  els.queue.hidden = queue.length < 2;
  els.clearQueue.hidden = queue.length === 0;
  els.drop.classList.toggle("compact", queue.length > 0);
  els.run.disabled = busy || queue.length === 0;
  if (!busy) els.run.textContent = waiting > 1 ? `Read ${waiting} files` : "Read text";
  const done = queue.filter((item) => item.state === "done");
  els.batchRow.hidden = queue.length < 2;
  els.batchText.textContent = `${done.length} of ${queue.length} files read`;
  els.allJson.disabled = els.allMd.disabled = done.length === 0;
}

function select(item) {
  const previous = view.item;
  view.item = item;
  if (item !== previous) {
    view.page = 1;
    view.scope = "all";
  }
  for (const other of queue) updateQueueItem(other);
  showItem();
}

// -- thumbnails --------------------------------------------------------------------------------------

async function loadThumbs(item) {
  item.thumbsNote = "Rendering the pages…";
  const form = new FormData();
  form.append("file", item.file, item.name);
  try {
    const response = await api("pdf-to-images", { method: "POST", body: form });
    const body = await readJson(response);
    if (response.ok && body && body.success) item.thumbs = body.images;
    else item.thumbsNote = `No page view: ${(body && body.error) || `HTTP ${response.status}`}`;
  } catch (err) {
    item.thumbsNote = `No page view: the server does not answer (${err.message || err})`;
  }
  if (item.thumbs) item.pageCount ||= item.thumbs.length;
  if (item === view.item) showItem();
}

function renderThumbs(item) {
  els.thumbs.hidden = !item.pdf || !item.thumbs;
  if (els.thumbs.hidden) return els.thumbs.replaceChildren();
  els.thumbs.replaceChildren(...item.thumbs.map((image) => {
    const n = image.page_number;
    const read = Boolean(item.pages[n - 1]);
    const button = el("button", { type: "button", className: "thumb", title: `Page ${n}` },
      el("img", { src: image.data, alt: "" }),
      el("span", { textContent: read ? `${n} ✓` : String(n) }));
    button.setAttribute("aria-label", `Page ${n}${read ? ", read" : ""}`);
    button.setAttribute("aria-current", String(n === view.page));
    button.dataset.page = String(n);
    button.addEventListener("click", () => {
      view.page = n;
      view.scope = String(n);
      showItem();
    });
    return button;
  }));
}

// -- showing one item ----------------------------------------------------------------------------

function pageResult(item, n) {
  return item ? item.pages[n - 1] || null : null;
}

function showItem() {
  const item = view.item;
  els.preview.hidden = !item;
  if (!item) {
    showResult();
    return;
  }
  els.fileName.textContent = `${item.name} · ${fmtBytes(item.file.size)}${item.pdf && item.pageCount ? ` · ${item.pageCount} pages` : ""}`;
  els.fileName.title = item.name;
  renderThumbs(item);
  let src = null;
  let dims = null;
  if (item.pdf && item.thumbs) {
    const image = item.thumbs[view.page - 1];
    src = image ? image.data : null;
    dims = image ? { w: image.width, h: image.height } : null;
  } else if (!item.pdf) {
    src = item.previewUrl;
  }
  if (src) {
    els.stage.hidden = false;
    els.noPreview.hidden = true;
    if (els.img.getAttribute("src") !== src) els.img.src = src;
  } else {
    showNoPreview(item.pdf ? item.thumbsNote || "PDF document" : "No preview for this file");
  }
  const page = pageResult(item, item.pdf ? view.page : 1);
  const boxes = pageBoxes(page).filter((b) => Array.isArray(b.box) && b.box.length === 4 && b.box.every(Number.isFinite));
  layer.set(boxes, (page && page.image_dims && page.image_dims.w > 0 && page.image_dims.h > 0) ? page.image_dims : dims);
  els.boxesSwitch.hidden = boxes.length === 0;
  showResult();
}

// a page read with its layout (ppocr's `regions`) shows its regions, labelled with their type;
// other answers their boxes (lines, grounding spans)
function pageBoxes(page) {
  if (page && Array.isArray(page.regions) && page.regions.length) {
    return page.regions.map((r) => ({ box: r.box, label: r.text ? `${r.type}: ${r.text}` : r.type }));
  }
  return (page && page.boxes) || [];
}

function showNoPreview(text) {
  els.stage.hidden = true;
  els.noPreview.hidden = false;
  els.noPreviewText.textContent = text;
}

function scopeText(item) {
  const pages = item.pages;
  if (view.scope !== "all") return (pages[Number(view.scope) - 1] || {}).text || "";
  if (!item.pdf || item.pageCount <= 1) return (pages[0] || {}).text || "";
  // pages marked as the CLI and the upstream tools do
  return pages.map((p, i) => (p ? `--- Page ${i + 1} ---\n${p.text}` : "")).filter(Boolean).join("\n\n");
}

function showResult() {
  const item = view.item;
  const pages = item ? item.pages.filter(Boolean) : [];
  const has = pages.length > 0;
  els.error.hidden = !(item && item.error);
  if (item && item.error) els.error.replaceChildren(...item.error);
  els.empty.hidden = has || Boolean(item && item.error);
  els.empty.textContent = item && item.state === "reading" ? "Reading…" : "The recognized text appears here.";
  showProgress(item);

  els.viewRow.hidden = !has;
  syncScope(item);
  const text = has ? scopeText(item) : "";
  const documentTask = item && item.fields && item.fields.prompt_type === "document";
  const rendered = has && (view.mode ? view.mode === "rendered" : documentTask);
  els.viewRendered.setAttribute("aria-pressed", String(rendered));
  els.viewRaw.setAttribute("aria-pressed", String(!rendered));
  els.text.hidden = !has || rendered;
  els.text.textContent = text;
  els.doc.hidden = !has || !rendered;
  if (rendered) renderDocument(item);
  else els.doc.replaceChildren();

  for (const button of [els.copy, els.download]) button.disabled = !text;
  els.downloadJson.disabled = !has;
  showFacts(item);
  showBoxList();
  syncRun();
}

function syncScope(item) {
  const count = item && item.pdf ? item.pageCount : 0;
  els.scope.parentElement.hidden = count <= 1;
  const wanted = count > 1 ? ["all", ...Array.from({ length: count }, (_, i) => String(i + 1))] : ["all"];
  if ([...els.scope.options].map((o) => o.value).join() !== wanted.join()) {
    els.scope.replaceChildren(...wanted.map((v) => el("option", { value: v, textContent: v === "all" ? "Whole document" : `Page ${v}` })));
  }
  if (!wanted.includes(view.scope)) view.scope = "all";
  els.scope.value = view.scope;
}

function showProgress(item) {
  const reading = item && item.state === "reading";
  els.progressRow.hidden = !reading;
  if (!reading) return;
  const done = item.pages.filter(Boolean).length;
  if (item.pageCount) {
    els.progress.max = item.pageCount;
    els.progress.value = done;
    els.progressText.textContent = `page ${Math.min(done + 1, item.pageCount)} of ${item.pageCount}` +
      (done ? ` · ${done} read` : "") + (item.loading ? ` · ${item.loading}` : "");
  } else {
    els.progress.removeAttribute("value");
    els.progressText.textContent = item.loading || "reading…";
  }
}

function showFacts(item) {
  const done = item && item.done;
  els.timing.hidden = !done;
  if (!done) return;
  const meta = done.metadata || {};
  const facts = [["Round trip", fmtSeconds(item.roundTrip), "measured in this browser"]];
  for (const [key, value] of Object.entries(meta.timing || {})) {
    // seconds end in _s; the rest are counts (batch: how many pages the engine read at once)
    const shown = key.endsWith("_s") ? fmtSeconds(value) : String(value);
    if (typeof value === "number") facts.push([TIMING_LABELS[key] || key.replace(/_s$/, ""), shown]);
  }
  if (meta.model) facts.push(["Model", `${meta.model} on ${meta.device || "?"}`]);
  if (item.pdf) facts.push(["Pages", String(done.pages)]);
  else if (done.image_dims) facts.push(["Image", `${done.image_dims.w} × ${done.image_dims.h} px`]);
  if (Number.isFinite(meta.size_bytes)) facts.push(["Upload", fmtBytes(meta.size_bytes)]);
  fillFacts(els.timing, facts);
}

function showBoxList() {
  const item = view.item;
  const label = item && item.pdf && item.pageCount > 1 ? ` on page ${view.page}` : "";
  els.boxCount.textContent = `(${layer.boxes.length})`;
  els.boxesList.querySelector(".where").textContent = label;
  els.lines.replaceChildren(...layer.boxes.map((b, i) => {
    const li = el("li", { tabIndex: 0, textContent: b.label || `box ${i + 1}` });
    li.dataset.index = String(i);
    return li;
  }));
  els.boxesList.hidden = layer.boxes.length === 0;
}

// -- documents ----------------------------------------------------------------------------------

function renderDocument(item) {
  const numbers = view.scope === "all" ? item.pages.map((p, i) => (p ? i + 1 : 0)).filter(Boolean) : [Number(view.scope)];
  const parts = [];
  for (const n of numbers) {
    const page = item.pages[n - 1];
    if (!page) continue;
    if (numbers.length > 1) parts.push(el("p", { className: "page-mark", textContent: `Page ${n}` }));
    const fragment = renderMarkdown(page.text);
    // the result's figure crops (ppocr's figure regions) by their box, cut from the page shown
    const figures = (page.figures || []).map((f, i) => ({ box: f.box, figure: i }));
    fillFigures(fragment, [...figures, ...(page.boxes || [])], pageImageUrl(item, n), page.image_dims);
    parts.push(fragment);
  }
  els.doc.replaceChildren(...parts);
}

function pageImageUrl(item, n) {
  if (!item.pdf) return item.previewUrl;
  return item.thumbs && item.thumbs[n - 1] ? item.thumbs[n - 1].data : null;
}

// -- reading ------------------------------------------------------------------------------------

async function readItem(item) {
  Object.assign(item, { state: "reading", pages: [], done: null, error: null, loading: null, fields: taskFields() });
  if (!item.thumbs) item.pageCount = 0;
  const started = performance.now();
  const refresh = () => {
    updateQueueItem(item);
    if (item === view.item) showItem();
  };
  refresh();
  const form = new FormData();
  for (const [key, value] of Object.entries(item.fields)) form.append(key, value);
  form.append("file", item.file, item.name);
  try {
    const response = await api("ocr/stream", { method: "POST", body: form });
    if (!response.ok) {
      item.error = responseError("OCR failed", response, await readJson(response));
    } else {
      await readLines(response, (line) => {
        if (line.loading) {
          item.loading = line.message; // the model loads first (seconds): say so until a page comes
          pollSoon();
        } else if (line.done) {
          if (line.success) item.done = line;
          else item.error = errorNode("OCR failed", line.status, `${line.error}${line.page ? ` (page ${line.page})` : ""}`, line.request_id);
        } else {
          item.loading = null;
          item.pageCount = line.pages;
          item.pages[line.page - 1] = line;
          if (item.pdf && item === view.item && !pageResult(item, view.page)) view.page = line.page;
        }
        refresh();
      });
      if (!item.done && !item.error) item.error = ["OCR failed: the answer ended early; the server may have restarted."];
    }
  } catch (err) {
    item.error = [`OCR failed: the server does not answer (${err.message || err}).`];
  }
  item.roundTrip = (performance.now() - started) / 1000;
  item.state = item.error ? "failed" : "done";
  refresh();
}

async function run(event) {
  event.preventDefault();
  if (busy || !queue.length) return;
  const fields = taskFields();
  for (const [key, id, what] of [["find_term", "find-term", "the term to find"], ["custom_prompt", "custom-prompt", "a prompt"]]) {
    if (key in fields && !fields[key].trim()) {
      setRunState(`Enter ${what} first.`);
      $(id).focus();
      return;
    }
  }
  let todo = queue.filter((item) => item.state === "waiting");
  if (!todo.length && view.item) todo = [view.item]; // read again, e.g. with another task
  busy = true;
  els.run.disabled = true;
  els.run.setAttribute("aria-busy", "true");
  const started = performance.now();
  const tick = () => { els.run.textContent = `Reading… ${Math.floor((performance.now() - started) / 1000)} s`; };
  tick();
  ticker = setInterval(tick, 500);
  pollSoon(); // the state card follows the request
  try {
    for (const [i, item] of todo.entries()) {
      setRunState(todo.length > 1 ? `File ${i + 1} of ${todo.length}: ${item.name}` : `Reading ${item.name}`);
      if (todo.length > 1) select(item);
      await readItem(item);
    }
    const failed = todo.filter((item) => item.state === "failed").length;
    const summary = failed ? `${failed} of ${todo.length} failed.` : `Done in ${fmtSeconds((performance.now() - started) / 1000)}.`;
    setRunState([summary, waitingText()].filter(Boolean).join(" ")); // files added meanwhile wait
  } finally {
    clearInterval(ticker);
    busy = false;
    els.run.removeAttribute("aria-busy");
    syncRun();
    pollSoon();
  }
}

function setRunState(text) {
  els.runState.textContent = text;
}

// -- wiring ---------------------------------------------------------------------------------------

function wire() {
  els.file.addEventListener("change", () => {
    addFiles(els.file.files);
    els.file.value = ""; // the same file may be added again
  });
  els.addFiles.addEventListener("click", () => els.file.click());
  els.clearQueue.addEventListener("click", clearQueue);
  els.form.addEventListener("submit", run);
  layer.wire();
  els.img.addEventListener("error", () => {
    if (view.item && !view.item.pdf) showNoPreview("No preview for this format; the server can still read it");
  });

  els.scope.addEventListener("change", () => {
    view.scope = els.scope.value;
    if (view.scope !== "all") view.page = Number(view.scope);
    showItem();
  });
  for (const [button, mode] of [[els.viewRendered, "rendered"], [els.viewRaw, "raw"]]) {
    button.addEventListener("click", () => {
      view.mode = mode;
      showResult();
    });
  }
  els.copy.addEventListener("click", () => copyText(view.item ? scopeText(view.item) : "", els.copy, els.text.hidden ? els.doc : els.text));
  els.download.addEventListener("click", () => downloadText(view.item, view.scope, scopeText(view.item)));
  els.downloadJson.addEventListener("click", () => downloadJson(view.item));
  els.allJson.addEventListener("click", () => downloadAll(queue, "json"));
  els.allMd.addEventListener("click", () => downloadAll(queue, "md"));

  wireDrop(els.drop, els.preview, addFiles);
  document.addEventListener("paste", (event) => {
    addFiles([...(event.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/") || isPdf(f)));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !els.run.disabled) els.form.requestSubmit();
  });
  wireKey(pollSoon);
}

wire();
syncRun();
showResult();
startStatus(() => busy);
