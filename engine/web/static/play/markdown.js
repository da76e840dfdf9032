// Markdown as Poe shows it: rendered with marked, then sanitized with DOMPurify, on every
// chunk, so a half-streamed answer is as safe as a finished one.

/* global marked, DOMPurify */

marked.setOptions({ gfm: true, breaks: true });

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.getAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

/** Safe HTML for a Markdown text; `files` with an inline_ref resolve `![alt][ref]`. */
export function renderMarkdown(text, files = []) {
  const refs = files
    .filter((file) => file.inline_ref)
    .map((file) => `\n[${file.inline_ref}]: ${file.url}`)
    .join("");
  const html = marked.parse(refs ? `${text}\n${refs}` : text, { async: false });
  return DOMPurify.sanitize(html, { USE_PROFILES: { html: true } });
}

/** Fills `el` with the text as Markdown, or as plain text when the bot's meta asked so. */
export function renderInto(el, text, contentType = "text/markdown", files = []) {
  if (contentType === "text/plain") {
    el.classList.add("plain");
    el.textContent = text;
  } else {
    el.classList.remove("plain");
    el.innerHTML = renderMarkdown(text, files);
  }
}
