// Small helpers shared by the playground's pages: DOM building, ids, JSON fetches and the
// version poll that makes every page follow hot reloads.

/** Builds an element: h("div", {class: "x", dataset: {testid: "y"}}, child, "text"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A Poe-style id ("m-…", "c-…"); getRandomValues works off secure contexts too. */
export function newId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return prefix + "-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Microseconds since the epoch, as Poe stamps messages. */
export function nowMicros() {
  return Date.now() * 1000;
}

export const API = "/play/api";

/** GETs JSON; a non-2xx answer raises with the server's own error text when it has one. */
export async function getJSON(path) {
  const response = await fetch(API + path, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = new Error((body && body.error) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

/** Calls onChange(version) at start and whenever the engine reloads; shows the state. */
export function followVersion(onChange, interval = 1000) {
  const badge = document.querySelector("[data-testid=version]");
  const text = badge && badge.querySelector(".version-text");
  let last = null;
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      const { version } = await getJSON("/version");
      badge && badge.classList.remove("offline");
      if (text) text.textContent = `live · v${version}`;
      if (badge) badge.dataset.version = String(version);
      if (version !== last) {
        last = version;
        await onChange(version);
      }
    } catch {
      badge && badge.classList.add("offline");
      if (text) text.textContent = "server unreachable";
    } finally {
      busy = false;
    }
  };
  tick();
  return setInterval(tick, interval);
}

/** A small status badge ("ok", "stale", a kind…). */
export function badge(text, kind, testid) {
  return h("span", { class: `badge badge-${kind}`, dataset: testid ? { testid } : undefined }, text);
}

// How `validate` marks a warning: "file:line:column: warning: ...".
const WARNING = /^[^\n]*?:\d+:\d+: warning: /;

/** The problems of a bot file as validate prints them, one per line, monospace. */
export function problemList(problems) {
  return h(
    "ul",
    { class: "problems", dataset: { testid: "problems" } },
    problems.map((text) =>
      h("li", { class: WARNING.test(text) ? "warning" : "error", dataset: { testid: "problem" } },
        text),
    ),
  );
}
