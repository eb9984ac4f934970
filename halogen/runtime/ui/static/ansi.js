// ANSI SGR colour codes (what llama-server and the proxy print) to spans with classes. Text is
// put in text nodes, never parsed as HTML; any other escape sequence is dropped.

const SGR = /\x1b\[([0-9;]*)m/g;
const OTHER = /\x1b\[[0-9;?]*[A-Za-ln-z]/g;

export function parse(text) {
  const runs = [];
  let style = { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
  let at = 0;
  const clean = text.replace(OTHER, "");
  for (const match of clean.matchAll(SGR)) {
    if (match.index > at) runs.push({ text: clean.slice(at, match.index), style: { ...style } });
    style = apply(style, match[1]);
    at = match.index + match[0].length;
  }
  if (at < clean.length) runs.push({ text: clean.slice(at), style: { ...style } });
  return runs;
}

function apply(style, params) {
  const codes = params === "" ? [0] : params.split(";").map((p) => Number(p));
  const next = { ...style };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) Object.assign(next, { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false });
    else if (c === 1) next.bold = true;
    else if (c === 2) next.dim = true;
    else if (c === 3) next.italic = true;
    else if (c === 4) next.underline = true;
    else if (c === 22) next.bold = next.dim = false;
    else if (c === 23) next.italic = false;
    else if (c === 24) next.underline = false;
    else if (c >= 30 && c <= 37) next.fg = c - 30;
    else if (c >= 90 && c <= 97) next.fg = c - 90 + 8;
    else if (c === 39) next.fg = null;
    else if (c >= 40 && c <= 47) next.bg = c - 40;
    else if (c >= 100 && c <= 107) next.bg = c - 100 + 8;
    else if (c === 49) next.bg = null;
    else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
      // 256 colours: the first 16 map to the palette, the rest are left uncoloured.
      const n = codes[i + 2];
      if (n < 16) next[c === 38 ? "fg" : "bg"] = n;
      i += 2;
    } else if ((c === 38 || c === 48) && codes[i + 1] === 2) i += 4;
  }
  return next;
}

export function toNodes(text) {
  return parse(text).map(({ text: t, style }) => {
    const classes = [];
    if (style.fg !== null) classes.push(`fg${style.fg}`);
    if (style.bg !== null) classes.push(`bg${style.bg}`);
    if (style.bold) classes.push("b");
    if (style.dim) classes.push("dim");
    if (style.italic) classes.push("i");
    if (style.underline) classes.push("u");
    if (!classes.length) return document.createTextNode(t);
    const span = document.createElement("span");
    span.className = classes.join(" ");
    span.textContent = t;
    return span;
  });
}
