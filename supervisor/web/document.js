// Markdown output as a document: marked (GFM: tables, headings, lists) then DOMPurify, both vendored
// and pinned (vendor/README.md). Model output is untrusted: scripts, handlers, styles, forms and
// anything that would load from elsewhere are dropped; LaTeX stays as code; `![](figure-N.png)`
// placeholders become figure slots the page fills with the box's crop.

import { Marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.js";
import { DROPPED_ELEMENTS, inertHtml } from "./inert.js";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);

// \( ... \), \[ ... \] and $$ ... $$ as code: no math renderer, and markdown must not eat the backslashes
const MATH = [/^\\\(([\s\S]+?)\\\)/, /^\\\[([\s\S]+?)\\\]/, /^\$\$([\s\S]+?)\$\$/];
const math = {
  name: "math",
  level: "inline",
  start(src) {
    const match = src.match(/\\\(|\\\[|\$\$/);
    return match ? match.index : undefined;
  },
  tokenizer(src) {
    for (const pattern of MATH) {
      const match = pattern.exec(src);
      if (match) return { type: "math", raw: match[0], text: match[0] };
    }
    return undefined;
  },
  renderer(token) {
    return `<code class="math">${escapeHtml(token.text)}</code>`;
  },
};

const FIGURE = /^figure-(\d+)(?:\.png)?$/; // DeepSeek's `figure-N`, the result's `figures` ids `figure-N.png`

const marked = new Marked({ gfm: true, breaks: false });
marked.use({
  extensions: [math],
  renderer: {
    image({ href, text }) {
      const figure = FIGURE.exec(href || "");
      if (figure) return `<span class="figure" data-figure="${figure[1]}">Figure ${Number(figure[1]) + 1}</span>`;
      // the page loads nothing the model names
      return `<span class="figure">${escapeHtml(text || "image")}</span>`;
    },
  },
});

const PURIFY = {
  RETURN_DOM_FRAGMENT: true,
  // the same elements inertHtml drops before: DOMPurify is the second line
  FORBID_TAGS: [...DROPPED_ELEMENTS],
  FORBID_ATTR: ["style", "srcset", "src", "action", "formaction"],
  ALLOW_DATA_ATTR: true,
};

// links open elsewhere and say nothing about this page
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

// handlers, styles and unsafe URLs go before DOMPurify parses the HTML (inert.js): even its inert
// parse of an onclick or a style attribute counts as a violation of the page's CSP and is reported.
export function renderMarkdown(text) {
  return DOMPurify.sanitize(inertHtml(marked.parse(text || "", { async: false })), PURIFY);
}

// each figure placeholder in `root` shows the part of the page its box covers (the page's image at
// `url`, boxes in the pixel space of `dims`)
export function fillFigures(root, boxes, url, dims) {
  for (const slot of root.querySelectorAll(".figure[data-figure]")) {
    const index = Number(slot.dataset.figure);
    const found = figureBox(boxes, index);
    if (!found) {
      slot.textContent = `Figure ${index + 1} (no box)`;
      continue;
    }
    const [x1, y1, x2, y2] = found.box;
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, x2 - x1);
    canvas.height = Math.max(1, y2 - y1);
    canvas.setAttribute("aria-hidden", "true");
    const caption = document.createElement("span");
    caption.className = "figure-caption";
    caption.textContent = `Figure ${index + 1} · box [${found.box.join(", ")}]`;
    slot.replaceChildren(canvas, caption);
    if (!url) continue;
    const image = new Image();
    image.addEventListener("load", () => {
      const sx = image.naturalWidth / ((dims && dims.w) || image.naturalWidth);
      const sy = image.naturalHeight / ((dims && dims.h) || image.naturalHeight);
      canvas.getContext("2d").drawImage(image, x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy, 0, 0, canvas.width, canvas.height);
      slot.dataset.drawn = "true";
    });
    image.src = url;
  }
}

// the box a `figure-N` placeholder stands for: an explicit `figure` index, else the N-th image box
export function figureBox(boxes, n) {
  const explicit = boxes.find((b) => b.figure === n);
  if (explicit) return explicit;
  const images = boxes.filter((b) => /^(image|figure)$/i.test(b.label || ""));
  return images[n] || null;
}
