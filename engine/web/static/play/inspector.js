// The protocol inspector: one entry per turn, newest first, with the request body, every
// event as received with its time, the timings, the protocol violations, the decoded flow
// state and the path the engine took.

import { h } from "./util.js";

const ms = (value) => (value === null || value === undefined ? "–" : `${Math.round(value)} ms`);

const plural = (count, noun) => `${count} ${noun}${count === 1 ? "" : "s"}`;

function short(data) {
  const text = JSON.stringify(data);
  return text && text.length > 240 ? text.slice(0, 240) + "…" : text ?? "null";
}

export class Inspector {
  constructor(container) {
    this.container = container;
    this.count = 0;
  }

  /** Starts a turn's entry; returns the handler for its NDJSON lines. */
  begin() {
    this.count += 1;
    if (this.count === 1) this.container.replaceChildren();
    for (const old of this.container.querySelectorAll("details.turn")) old.open = false;
    const entry = new TurnEntry(this.count);
    this.container.prepend(entry.el);
    return entry;
  }
}

class TurnEntry {
  constructor(number) {
    this.status = h("span", { class: "turn-status" }, "sending…");
    this.summaryTimings = h("span", { class: "turn-timings muted" });
    this.flag = h("span", { class: "turn-flag" });
    this.request = h("div", { class: "turn-request" });
    this.events = h("tbody");
    this.timings = h("div", { class: "timings", dataset: { testid: "inspector-timings" } });
    this.violations = h("div", { class: "violations-box" });
    this.state = h("div", { class: "state-box" });
    this.trace = h("div", { class: "trace-box" });
    this.el = h(
      "details",
      { class: "turn", open: true, dataset: { testid: "inspector-turn", turn: String(number) } },
      h("summary", {}, h("strong", {}, `Turn ${number}`), " ", this.status, " ", this.summaryTimings, " ", this.flag),
      this.request,
      h("table", { class: "events", dataset: { testid: "inspector-events" } },
        h("thead", {}, h("tr", {}, h("th", {}, "t"), h("th", {}, "event"), h("th", {}, "data"))),
        this.events),
      this.timings,
      this.violations,
      this.trace,
      this.state,
    );
  }

  handle(line) {
    switch (line.kind) {
      case "request": return this.onRequest(line);
      case "response": return this.onResponse(line);
      case "event": return this.row(line.t, line.event, short(line.data), line.raw, "event");
      case "comment": return this.row(line.t, ": comment", line.text, `: ${line.text}`, "comment");
      case "trace": return this.onTrace(line);
      case "end": return this.onEnd(line);
      default: return this.row(null, line.kind, short(line), "", "unknown");
    }
  }

  /** The turn failed before or outside the NDJSON answer. */
  fail(message) {
    this.status.textContent = "failed";
    this.status.className = "turn-status bad";
    this.violations.replaceChildren(h("p", { class: "error-text" }, message));
  }

  onRequest(line) {
    this.request.replaceChildren(
      h("div", { class: "muted" }, "POST ", h("code", { dataset: { testid: "inspector-url" } }, line.url)),
      h("details", { class: "request-body", dataset: { testid: "inspector-request" } },
        h("summary", {}, `Request body (${line.body && line.body.query ? line.body.query.length : 0} messages)`),
        h("pre", {}, JSON.stringify(line.body, null, 2))),
    );
  }

  onResponse(line) {
    const ok = line.status >= 200 && line.status < 300;
    this.status.textContent = `HTTP ${line.status}`;
    this.status.className = ok ? "turn-status good" : "turn-status bad";
    this.row(line.t, "HTTP", `${line.status} ${line.content_type || ""}`, "", "response");
  }

  row(t, name, text, raw, kind) {
    this.events.append(
      h("tr", { class: `row-${kind}`, title: raw || "", dataset: { testid: "inspector-event", event: name } },
        h("td", { class: "t" }, t === null || t === undefined ? "" : ms(t)),
        h("td", { class: "name" }, name),
        h("td", { class: "data" }, h("code", {}, text))),
    );
  }

  onTrace(line) {
    const path = line.path || [];
    this.trace.replaceChildren(
      h("div", { class: "label" }, "Path taken"),
      h("div", { class: "trace-path", dataset: { testid: "inspector-trace" } },
        path.length ? path.map((loc) => h("code", {}, loc)) : h("span", { class: "muted" }, "nothing recorded")),
    );
  }

  onEnd(line) {
    const t = line.timings || {};
    const chunks = t.chunks || [];
    this.summaryTimings.textContent = `first byte ${ms(t.first_byte)} · done ${ms(t.done)}`;
    this.timings.replaceChildren(
      h("span", { dataset: { testid: "timing-first-byte" } }, "first byte ", h("strong", {}, ms(t.first_byte))),
      h("span", { dataset: { testid: "timing-done" } }, "done ", h("strong", {}, ms(t.done))),
      h("span", { dataset: { testid: "timing-chunks" } }, plural(chunks.length, "chunk"),
        chunks.length ? h("span", { class: "muted" }, ` at ${chunks.map((c) => Math.round(c)).join(", ")} ms`) : null),
    );
    this.showViolations(line.violations || []);
    if (line.state) {
      this.state.replaceChildren(
        h("div", { class: "label" }, "Flow state"),
        h("pre", { dataset: { testid: "inspector-state" } }, JSON.stringify(line.state, null, 2)),
      );
    }
  }

  showViolations(violations) {
    const errors = violations.filter((v) => (v.severity || "error") !== "warning").length;
    const warnings = violations.length - errors;
    this.el.dataset.violations = String(violations.length);
    const flags = [];
    if (errors) flags.push(h("span", { class: "badge badge-broken" }, plural(errors, "error")));
    if (warnings) flags.push(h("span", { class: "badge badge-warnings" }, plural(warnings, "warning")));
    if (!violations.length) flags.push(h("span", { class: "badge badge-ok" }, "protocol ok"));
    this.flag.replaceChildren(...flags);
    if (!violations.length) {
      this.violations.replaceChildren();
      return;
    }
    this.violations.replaceChildren(
      h("ul", { class: "violations", dataset: { testid: "violations" } },
        violations.map((v) => {
          const severity = v.severity || "error";
          return h("li", { class: `violation ${severity}`, dataset: { testid: "violation", rule: v.rule, severity } },
            h("span", { class: "rule" }, `${severity === "warning" ? "⚠" : "✖"} ${v.rule}`),
            " ",
            h("span", { class: "message" }, v.message),
            v.event !== null && v.event !== undefined ? h("span", { class: "muted" }, ` (event #${v.event})`) : null);
        })),
    );
  }
}
