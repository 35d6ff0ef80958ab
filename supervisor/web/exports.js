// Copy and download: one result's text (the shown page or the whole document), its JSON, or every
// finished item of the queue as one JSON or one markdown file.

import { downloadBlob, flash } from "./format.js";

function baseName(item) {
  return (item.name || "result").replace(/\.[^.]+$/, "") || "result";
}

function isMarkdown(item) {
  return Boolean(item.fields && item.fields.prompt_type === "document");
}

function itemJson(item) {
  return { file: item.name, ...(item.done || {}), pages: item.pages.filter(Boolean) };
}

function wholeText(item) {
  const pages = item.pages.filter(Boolean);
  if (!item.pdf || pages.length <= 1) return (pages[0] || {}).text || "";
  return pages.map((p) => `--- Page ${p.page} ---\n${p.text}`).join("\n\n");
}

export async function copyText(text, button, shown) {
  try {
    await navigator.clipboard.writeText(text);
    flash(button, "Copied ✓");
  } catch {
    // the clipboard API needs a secure context; plain http on the LAN falls back to a selection
    const range = document.createRange();
    range.selectNodeContents(shown);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    flash(button, document.execCommand("copy") ? "Copied ✓" : "Press Ctrl+C");
  }
}

// `scope` is "all" or a page number; `text` what the page shows for it
export function downloadText(item, scope, text) {
  const suffix = scope === "all" ? "" : `-page-${scope}`;
  downloadBlob(`${baseName(item)}${suffix}.${isMarkdown(item) ? "md" : "txt"}`, text, "text/plain;charset=utf-8");
}

export function downloadJson(item) {
  downloadBlob(`${baseName(item)}.json`, JSON.stringify(itemJson(item), null, 2), "application/json");
}

export function downloadAll(queue, kind) {
  const done = queue.filter((item) => item.state === "done");
  if (kind === "json") {
    downloadBlob("dsocr-results.json", JSON.stringify(done.map(itemJson), null, 2), "application/json");
  } else {
    const text = done.map((item) => `# ${item.name}\n\n${wholeText(item)}\n`).join("\n");
    downloadBlob("dsocr-results.md", text, "text/markdown;charset=utf-8");
  }
}
