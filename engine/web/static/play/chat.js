// The chat page (/play/bots/<name>): the greeting, the conversation, streamed Markdown
// answers, suggested replies, errors, parameter controls, attachments, "Clear context",
// and beside them the diagram and the protocol inspector. Follows every reload.

import { Controls } from "./controls.js";
import { Conversation } from "./conversation.js";
import { Diagram } from "./diagram.js";
import { Inspector } from "./inspector.js";
import { renderInto } from "./markdown.js";
import { streamTurn, upload } from "./turn.js";
import { badge, followVersion, getJSON, h, problemList } from "./util.js";

const $ = (id) => document.getElementById(id);

class ChatPage {
  constructor(bot) {
    this.bot = bot;
    this.info = null;
    this.conversation = new Conversation(bot);
    this.controls = new Controls($("controls"), $("params-panel"), (values) => {
      this.conversation.params = values;
      this.conversation.save();
    });
    this.diagram = new Diagram($("diagram"));
    this.inspector = new Inspector($("inspector"));
    this.elements = new Map(); // conversation item -> its element
    this.pending = []; // attachments waiting for the next message: {name, state, attachment}
    this.streaming = false;
    this.bindComposer();
    this.renderMessages();
  }

  // ---- the bot, as the server has it now -------------------------------------------------

  async refresh() {
    let info;
    try {
      info = await getJSON(`/bots/${encodeURIComponent(this.bot)}`);
    } catch (error) {
      this.showMissing(error);
      return;
    }
    const previous = this.info;
    this.info = info;
    document.body.dataset.status = info.status;
    $("bot-badges").replaceChildren(
      info.kind ? badge(info.kind, "kind", "bot-kind") : null,
      badge(info.status, info.status, "bot-status"),
    );
    this.showProblems(info);
    const settings = info.settings || {};
    this.controls.update(settings.parameter_controls || null, this.conversation.params);
    this.conversation.params = this.controls.current();
    $("attach").hidden = !settings.allow_attachments;
    if (!previous || previous.diagram !== info.diagram) this.diagram.show(info.diagram);
    if (!previous || (previous.settings || {}).introduction_message !== settings.introduction_message) {
      this.renderMessages();
    }
  }

  showMissing(error) {
    const banner = $("bot-problems");
    banner.hidden = false;
    banner.className = "banner broken";
    banner.replaceChildren(
      h("strong", {}, error.status === 404 ? `No bot named ${this.bot} now.` : "The bot could not be loaded."),
      " ",
      error.status === 404 ? "Its file was deleted or renamed; " : `${error.message}; `,
      h("a", { href: "/play/" }, "see every bot"),
      ".",
    );
    document.body.dataset.status = "missing";
  }

  showProblems(info) {
    const banner = $("bot-problems");
    banner.hidden = info.status === "ok";
    if (banner.hidden) return;
    const lead = {
      warnings: "This bot's file has warnings.",
      stale: "This bot's file has errors: the last good version still answers.",
      broken: "This bot's file has errors and no version of it can answer.",
    }[info.status] || `Status: ${info.status}`;
    banner.className = `banner ${info.status}`;
    banner.replaceChildren(h("strong", {}, lead), problemList(info.problems || []));
  }

  // ---- the conversation ------------------------------------------------------------------

  renderMessages() {
    const box = $("messages");
    const intro = this.info && (this.info.settings || {}).introduction_message;
    this.elements.clear();
    const items = this.conversation.items.map((item) => this.itemElement(item));
    if (intro) items.unshift(this.bubble("bot", "greeting", (el) => renderInto(el, intro)));
    box.replaceChildren(...items);
    $("conversation-id").textContent = this.conversation.conversationId;
    this.renderSuggestions();
    this.scroll(true);
  }

  bubble(role, testid, fill) {
    const content = h("div", { class: "content", dataset: { testid: "message-content" } });
    fill(content);
    return h(
      "div",
      { class: `message ${role}`, dataset: { testid, role } },
      h("div", { class: "avatar" }, role === "user" ? "You" : this.bot.slice(0, 1).toUpperCase()),
      h("div", { class: "bubble" }, content),
    );
  }

  itemElement(item) {
    if (item.role === "break") {
      return h("div", { class: "chat-break", dataset: { testid: "chat-break" } }, h("span", {}, "Context cleared"));
    }
    const el = this.bubble(item.role, "message", () => {});
    this.elements.set(item, el);
    if (item.role === "user") {
      renderInto(el.querySelector(".content"), item.content);
      if (item.attachments && item.attachments.length) {
        el.querySelector(".bubble").append(this.attachmentChips(item.attachments));
      }
    } else {
      this.updateBot(item);
    }
    return el;
  }

  attachmentChips(attachments) {
    return h("div", { class: "chips" }, attachments.map((a) =>
      h("a", { class: "chip", href: a.url, target: "_blank", rel: "noopener", dataset: { testid: "message-attachment" } },
        a.content_type && a.content_type.startsWith("image/") ? h("img", { src: a.url, alt: "" }) : null,
        a.name)));
  }

  /** Redraws a bot message from its state: called on every chunk. */
  updateBot(item) {
    const el = this.elements.get(item);
    if (!el) return;
    el.dataset.state = item.state;
    const content = el.querySelector(".content");
    renderInto(content, item.content, item.content_type, item.files);
    const bubble = el.querySelector(".bubble");
    bubble.classList.toggle("waiting", !item.content && item.state === "streaming");
    bubble.querySelector(".files")?.remove();
    bubble.querySelector(".message-error")?.remove();
    const files = (item.files || []).filter((file) => !file.inline_ref);
    if (files.length) bubble.append(h("div", { class: "files" }, this.attachmentChips(files)));
    if (item.error) {
      bubble.append(h("div", { class: "message-error", dataset: { testid: "message-error" } },
        item.error.text, item.error.type ? h("span", { class: "muted" }, ` (${item.error.type})`) : null));
    }
    if (item.state === "interrupted") {
      bubble.append(h("div", { class: "message-error muted" }, "The page was left while this answer streamed."));
    }
  }

  renderSuggestions() {
    const last = this.conversation.lastBot();
    const replies = last && last.state !== "streaming" ? last.suggested || [] : [];
    $("suggestions").replaceChildren(...replies.map((text) =>
      h("button", { type: "button", class: "suggestion", dataset: { testid: "suggested-reply" },
        onclick: () => this.send(text) }, text)));
  }

  scroll(force = false) {
    const box = $("messages");
    const near = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
    if (force || near) box.scrollTop = box.scrollHeight;
  }

  // ---- sending a turn --------------------------------------------------------------------

  async send(text) {
    const ready = this.pending.filter((p) => p.state === "done");
    if (this.streaming || this.pending.some((p) => p.state === "uploading")) return;
    if (!text.trim() && !ready.length) return;
    this.streaming = true;
    $("send").disabled = true;
    const user = this.conversation.addUser(text, ready.map((p) => p.attachment), this.controls.current());
    this.pending = [];
    this.renderPending();
    $("messages").append(this.itemElement(user));
    const body = {
      conversation_id: this.conversation.conversationId,
      query: this.conversation.query(),
      language_code: (navigator.language || "en").split(",")[0],
    };
    const item = this.conversation.addBot();
    $("messages").append(this.itemElement(item));
    this.renderSuggestions();
    this.scroll(true);
    const entry = this.inspector.begin();
    let done = false;
    try {
      await streamTurn(this.bot, body, (line) => {
        entry.handle(line);
        if (line.kind === "event" && line.event === "done") done = true;
        this.apply(item, line, done);
      });
      if (item.state === "streaming") item.state = item.error ? "error" : "done";
    } catch (error) {
      entry.fail(error.message);
      item.error = { text: error.message, type: null };
      item.state = "error";
    } finally {
      this.streaming = false;
      $("send").disabled = false;
      this.conversation.save();
      this.updateBot(item);
      this.renderSuggestions();
      this.scroll();
    }
  }

  /** What one NDJSON line of the turn does to the bot's message (as Poe shows it). */
  apply(item, line, done) {
    if (line.kind === "trace") {
      this.diagram.highlight(line.nodes || []);
      return;
    }
    if (line.kind === "end") {
      item.message_id = line.message_id || item.message_id;
      const failure = (line.violations || []).find((v) => ["http-status", "content-type"].includes(v.rule));
      if (!item.error && failure) item.error = { text: failure.message, type: failure.rule };
      item.state = item.error ? "error" : "done";
      return;
    }
    if (line.kind !== "event" || done && line.event !== "done") return;
    const data = line.data || {};
    switch (line.event) {
      case "meta":
        if (data.content_type) item.content_type = data.content_type;
        break;
      case "text":
        item.content += data.text ?? "";
        break;
      case "replace_response":
        item.content = data.text ?? "";
        break;
      case "suggested_reply":
        if (data.text) item.suggested.push(data.text);
        break;
      case "file":
        item.files.push(data);
        break;
      case "data":
        item.metadata = data.metadata ?? null;
        break;
      case "error":
        item.error = { text: data.text || "The bot reported an error.", type: data.error_type || null };
        break;
      default:
        return;
    }
    this.updateBot(item);
    this.scroll();
  }

  // ---- the composer ----------------------------------------------------------------------

  bindComposer() {
    const input = $("input");
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value;
      if (this.streaming) return;
      input.value = "";
      this.fit(input);
      this.send(text);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("composer").requestSubmit();
      }
    });
    input.addEventListener("input", () => this.fit(input));
    $("clear-context").addEventListener("click", () => {
      if (this.streaming || !this.conversation.clearContext()) return;
      $("messages").append(this.itemElement({ role: "break" }));
      $("conversation-id").textContent = this.conversation.conversationId;
      this.renderSuggestions();
      this.scroll(true);
    });
    $("new-chat").addEventListener("click", () => {
      if (this.streaming) return;
      this.conversation.reset();
      this.renderMessages();
    });
    $("attach").addEventListener("click", () => $("file-input").click());
    $("file-input").addEventListener("change", (event) => {
      for (const file of event.target.files) this.attach(file);
      event.target.value = "";
    });
  }

  fit(input) {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
  }

  async attach(file) {
    const entry = { name: file.name, state: "uploading", attachment: null, error: null };
    this.pending.push(entry);
    this.renderPending();
    try {
      entry.attachment = await upload(file);
      entry.state = "done";
    } catch (error) {
      entry.state = "failed";
      entry.error = error.message;
    }
    this.renderPending();
  }

  renderPending() {
    $("pending-attachments").replaceChildren(...this.pending.map((entry) =>
      h("span", { class: `chip ${entry.state}`, title: entry.error || "", dataset: { testid: "attachment-chip", state: entry.state } },
        entry.state === "uploading" ? "uploading… " : entry.state === "failed" ? "failed: " : null,
        entry.name,
        h("button", { type: "button", class: "chip-remove", title: "Remove", onclick: () => {
          this.pending = this.pending.filter((p) => p !== entry);
          this.renderPending();
        } }, "×"))));
  }
}

export function start() {
  const page = new ChatPage(document.body.dataset.bot);
  followVersion(() => page.refresh());
}
