// Model output made inert before any HTML parser sees it. Chromium reports a CSP violation as soon as a
// parser meets an event-handler attribute (script-src 'self'), a style element or a style attribute
// (style-src 'self'): DOMParser's inert parse included, which is the one DOMPurify uses. So this pass
// rebuilds the HTML string from a tokenizer that follows the HTML standard's tokenizer states (data,
// tag name, attribute name and value, comment) and keeps only:
//   - text, with no "<" left that could open anything;
//   - tags written back in one plain form: lowercase name, each attribute double-quoted, `"<>` escaped.
// Comments, doctypes and processing instructions go. The browser then reads the result exactly as this
// pass did, so what was removed cannot come back by another reading of the same bytes (a ">" inside a
// quoted value, a comment that ends earlier than expected). Removed from tags: on* handlers, style, URLs
// whose scheme is not http(s)/mailto/tel (javascript:, data:, ...). Removed elements: those the renderer
// never shows, and every element that would change how what follows is tokenized (script, style and the
// other raw-text elements; svg and math, foreign content), so the browser never leaves its data state.
// DOMPurify still runs afterwards (document.js), as the second line.

// script and style go with their content (code, not text); the others' content stays as markup
const DROPPED_WITH_CONTENT = new Set(["script", "style"]);
export const DROPPED_ELEMENTS = new Set([
  ...DROPPED_WITH_CONTENT,
  // what the renderer never shows: media, frames, plug-ins, forms, document metadata
  "img", "video", "audio", "picture", "source", "track", "iframe", "frame", "frameset", "object", "embed", "applet",
  "param", "portal", "form", "input", "button", "select", "textarea", "option", "link", "meta", "base",
  // raw-text and foreign-content elements: the tokenizer reads their content differently
  "title", "xmp", "noembed", "noframes", "noscript", "plaintext", "template", "svg", "math",
]);

const URL_ATTRIBUTES = new Set(["href", "src", "srcset", "action", "formaction", "xlink:href", "data", "poster",
  "background", "cite", "ping", "longdesc", "lowsrc", "dynsrc", "usemap", "codebase", "manifest", "icon"]);
const SAFE_SCHEMES = new Set(["http", "https", "mailto", "tel"]);

const TAG_NAME = /^[a-z][a-z0-9-]*$/i;
const ATTRIBUTE_NAME = /^[a-z_:][a-z0-9_:.-]*$/i;
const ALPHA = /[a-z]/i;
// the standard's delimiters: ASCII whitespace, "/" and ">" end a tag name; "=" also ends an attribute name
const SPACE = /[\t\n\f\r ]/;
const ENDS_NAME = /[\t\n\f\r />]/;
const ENDS_ATTRIBUTE_NAME = /[\t\n\f\r />=]/;
const ENDS_UNQUOTED = /[\t\n\f\r >]/;

export function inertHtml(html) {
  const out = [];
  const n = html.length;
  let i = 0;
  while (i < n) {
    const lt = html.indexOf("<", i);
    if (lt < 0) {
      out.push(html.slice(i));
      break;
    }
    out.push(html.slice(i, lt));
    const next = html.charAt(lt + 1);
    const closing = next === "/" && ALPHA.test(html.charAt(lt + 2));
    if (ALPHA.test(next) || closing) {
      const tag = readTag(html, closing ? lt + 2 : lt + 1);
      i = tag.end;
      const name = tag.name.toLowerCase();
      // a tag cut off by the end of the input is dropped by the browser too
      if (!tag.complete || !TAG_NAME.test(name) || DROPPED_ELEMENTS.has(name)) {
        if (!closing && tag.complete && DROPPED_WITH_CONTENT.has(name)) i = endTagAt(html, name, i);
        continue;
      }
      out.push(closing ? `</${name}>` : `<${name}${keptAttributes(tag.attributes)}>`);
    } else if (next === "!" || next === "?" || next === "/") {
      i = markupDeclarationEnd(html, lt);
    } else {
      out.push("&lt;");
      i = lt + 1;
    }
  }
  return out.join("");
}

// a start or end tag from its name (at `start`) to its ">": the attributes as the standard's
// tokenizer splits them (a bare "=" can start a name; quotes may hold ">"; a value needs no space after)
function readTag(html, start) {
  const n = html.length;
  let i = start;
  while (i < n && !ENDS_NAME.test(html[i])) i++;
  const tag = { name: html.slice(start, i), attributes: [], end: n, complete: false };
  for (;;) {
    while (i < n && (SPACE.test(html[i]) || html[i] === "/")) i++;
    if (i >= n) return tag;
    if (html[i] === ">") return Object.assign(tag, { end: i + 1, complete: true });
    const from = i++;
    while (i < n && !ENDS_ATTRIBUTE_NAME.test(html[i])) i++;
    const name = html.slice(from, i);
    while (i < n && SPACE.test(html[i])) i++;
    let value = "";
    if (html[i] === "=") {
      i++;
      while (i < n && SPACE.test(html[i])) i++;
      const quote = html[i];
      if (quote === '"' || quote === "'") {
        const close = html.indexOf(quote, i + 1);
        if (close < 0) return tag;
        value = html.slice(i + 1, close);
        i = close + 1;
      } else {
        const begin = i;
        while (i < n && !ENDS_UNQUOTED.test(html[i])) i++;
        value = html.slice(begin, i);
      }
    }
    tag.attributes.push([name, value]);
  }
}

function keptAttributes(attributes) {
  let kept = "";
  for (const [raw, value] of attributes) {
    const name = raw.toLowerCase();
    if (!ATTRIBUTE_NAME.test(name) || name.startsWith("on") || name === "style") continue;
    if (URL_ATTRIBUTES.has(name) && !safeUrl(value)) continue;
    // "&" stays: character references decode the same way in every kind of attribute value
    kept += ` ${name}="${value.replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;")}"`;
  }
  return kept;
}

// a URL is kept when it has no scheme (relative, "#...") or one of SAFE_SCHEMES. Numeric character
// references are decoded and whitespace and controls removed first, as the browser would; a named
// reference before the scheme's ":" (`javascript&colon;`) cannot be told apart here, so that URL goes.
function safeUrl(value) {
  const url = value
    .replace(/&#x([0-9a-f]+);?|&#([0-9]+);?/gi, (_, hex, dec) => codePoint(hex ? parseInt(hex, 16) : Number(dec)))
    .replace(/[\u0000-\u0020\u007f-\u009f]/g, "")
    .toLowerCase();
  const head = url.split(/[/?#]/, 1)[0];
  if (head.includes("&")) return false;
  const colon = head.indexOf(":");
  return colon < 0 || SAFE_SCHEMES.has(head.slice(0, colon));
}

function codePoint(number) {
  return number > 0 && number <= 0x10ffff ? String.fromCodePoint(number) : "\ufffd";
}

// where the content of a script or style element ends: at its end tag, which the loop then drops
function endTagAt(html, name, from) {
  const match = new RegExp(`</${name}[\\t\\n\\f\\r />]`, "i").exec(html.slice(from));
  return match ? from + match.index : html.length;
}

// comments ("<!--" to "-->" or "--!>", also "<!-->"), doctypes, CDATA, "<?...>", "</...>" with no name:
// all dropped, up to where the browser ends them or further (what is dropped is never read again)
function markupDeclarationEnd(html, lt) {
  if (html.startsWith("<!--", lt)) {
    const ends = ["-->", "--!>"].map((end) => [html.indexOf(end, lt + 2), end.length]).filter(([at]) => at >= 0);
    if (ends.length === 0) return html.length;
    const [at, length] = ends.reduce((a, b) => (b[0] < a[0] ? b : a));
    return at + length;
  }
  const close = html.indexOf(">", lt + 2);
  return close < 0 ? html.length : close + 1;
}
