// The emulator's page around a canvas app (/play/canvas/<name>): the app in a sandboxed
// iframe, as Poe shows it, and the window.Poe calls it makes (poe-embed.js, inside the
// frame, sends them here with postMessage) carried out against the engine's bots: one
// conversation per bot over the playground's turn API, confirmations for bots with a
// rate card, uploads, charges and chats in a drawer beside the app.

import { Conversation } from "./conversation.js";
import { renderInto } from "./markdown.js";
import { streamTurn, upload } from "./turn.js";
import { followVersion, getJSON, h, newId } from "./util.js";

const $ = (id) => document.getElementById(id);
// As Poe's canvas frame: scripts and forms, no same origin (no storage, no reaching the
// page around it), no modals.
const SANDBOX = "allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox allow-downloads";
const USER_ID = "u-play";

class EmbedError extends Error {
  constructor(errorType, message) {
    super(message);
    this.errorType = errorType;
  }
}

/** A conversation that lives as long as the page: a canvas app starts afresh each load. */
class PageConversation extends Conversation {
  load() {
    return {};
  }

  save() {}
}

/** A bot answer as the Embed API's Message. */
function embedMessage(item) {
  const message = {
    messageId: item.message_id || item.local_id,
    senderId: item.bot,
    content: item.content,
    contentType: item.content_type === "text/plain" ? "text/plain" : "text/markdown",
    status: item.embedStatus,
    attachments: item.files.map((file, index) => ({
      attachmentId: `${item.local_id}-${index}`,
      mimeType: file.content_type || "application/octet-stream",
      url: file.url,
      isInline: Boolean(file.inline_ref),
      name: file.name || file.url.split("/").pop(),
    })),
  };
  if (item.error) message.statusText = item.error;
  return message;
}

/** A trigger message's attachments, from the playground's upload answers. */
function attachmentOf(uploaded, index) {
  return {
    attachmentId: `trigger-${index}`,
    mimeType: uploaded.content_type,
    url: uploaded.url,
    isInline: false,
    name: uploaded.name,
  };
}

/** The bot's rate card as Poe shows it: Markdown. */
function rateCard(text) {
  const el = h("div", { class: "rate content", dataset: { testid: "rate-card" } });
  renderInto(el, text);
  return el;
}

class CanvasHost {
  constructor(app) {
    this.app = app;
    this.frame = null;
    this.conversations = new Map(); // bot name -> PageConversation
    this.queues = new Map(); // bot name -> the promise of its last turn (turns go in order)
    this.confirmation = null; // the open confirmation: {resolve}
    this.shownChat = null; // bot whose chat the side panel shows
    this.trigger = { text: new URLSearchParams(location.search).get("trigger") || "", attachments: [] };
    window.addEventListener("message", (event) => this.onMessage(event));
    this.bindPanel();
    this.load();
  }

  /** The frame is made only now, after the listener: an app may call Poe at once. */
  load() {
    const frame = h("iframe", {
      src: `/play/canvas/${encodeURIComponent(this.app)}/app`,
      sandbox: SANDBOX,
      title: this.app,
      name: "canvas-app",
      dataset: { testid: "canvas-frame" },
    });
    $("canvas-stage").replaceChildren(frame);
    this.frame = frame;
  }

  // ---- the wire to poe-embed.js --------------------------------------------------------

  async onMessage(event) {
    const data = event.data;
    if (!this.frame || event.source !== this.frame.contentWindow || !data || data.poeEmbed !== 1) return;
    const methods = {
      sendUserMessage: (args) => this.send(data.id, args),
      getTriggerMessage: () => this.triggerMessage(),
      captureCost: (args) => this.capture(args),
    };
    const method = methods[data.method];
    try {
      if (!method) throw new EmbedError("UNKNOWN", `Poe has no method ${data.method}`);
      this.post(data.id, { reply: "resolve", value: await method(data.args) });
    } catch (error) {
      const errorType = error instanceof EmbedError ? error.errorType : "UNKNOWN";
      this.post(data.id, { reply: "reject", errorType, message: error.message || String(error) });
    }
  }

  post(id, message) {
    this.frame.contentWindow.postMessage({ poeEmbed: 1, id, ...message }, "*");
  }

  // ---- sendUserMessage -----------------------------------------------------------------

  /** Resolves once the message is on its way; the handler then hears the answer. */
  async send(id, args) {
    const { bot, text } = await this.addressee(args.text);
    const info = await getJSON(`/bots/${encodeURIComponent(bot)}`).catch((error) => {
      throw new EmbedError("UNKNOWN", `could not read @${bot}'s settings: ${error.message}`);
    });
    const settings = info.settings || {};
    if (settings.rate_card) await this.confirm(bot, args.text, settings);
    const attachments = await Promise.all(args.attachments.map((file) => upload(file))).catch((error) => {
      throw new EmbedError("UNKNOWN", `could not upload an attachment: ${error.message}`);
    });
    const previous = this.queues.get(bot) || Promise.resolve();
    const turn = previous.then(() => this.turn(id, bot, text, attachments, args));
    this.queues.set(bot, turn.catch(() => {}));
    return { success: true };
  }

  /** The bot the text names with its leading @Name (any case) and the text Poe sends it. */
  async addressee(text) {
    const match = /^\s*@([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(text);
    let bots;
    try {
      ({ bots } = await getJSON("/bots"));
    } catch (error) {
      throw new EmbedError("UNKNOWN", `could not list the bots: ${error.message}`);
    }
    const wanted = match[1].toLowerCase();
    const found = bots.find((bot) => bot.name.toLowerCase() === wanted);
    if (!found) {
      const names = bots.map((bot) => `@${bot.name}`).join(", ") || "none";
      throw new EmbedError("INVALID_INPUT", `sendUserMessage: no bot named @${match[1]} here; the bots are ${names}`);
    }
    return { bot: found.name, text: text.slice(match[0].length).replace(/^\s+/, "") };
  }

  async turn(id, bot, text, attachments, args) {
    const conversation = this.conversationOf(bot);
    conversation.addUser(text, attachments, {});
    const body = {
      conversation_id: conversation.conversationId,
      query: conversation.query(),
      language_code: (navigator.language || "en").split(",")[0],
    };
    const item = Object.assign(conversation.addBot(), { bot, local_id: newId("m"), embedStatus: "incomplete" });
    if (args.openChat) this.showChat(bot);
    this.renderChats();
    const tell = () => args.handler && this.post(id, { reply: "handler", result: { status: item.embedStatus, responses: [embedMessage(item)] } });
    let done = false;
    try {
      await streamTurn(bot, body, (line) => {
        if (line.kind === "event" && line.event === "done") done = true;
        if (this.apply(item, line, done) && args.stream && !item.error) tell();
      });
    } catch (error) {
      item.error = error.message;
    }
    item.embedStatus = item.error ? "error" : "complete";
    item.state = item.error ? "error" : "done";
    this.renderChat(bot);
    tell();
  }

  /** One NDJSON line of the turn applied to the answer; true when its text changed. */
  apply(item, line, done) {
    if (line.kind === "request") {
      item.message_id = (line.body && line.body.message_id) || item.message_id; // one id from the first result on
      return false;
    }
    if (line.kind === "end") {
      item.message_id = line.message_id || item.message_id;
      const failure = (line.violations || []).find((v) => ["http-status", "content-type"].includes(v.rule));
      if (!item.error && failure) item.error = failure.message;
      return false;
    }
    if (line.kind !== "event" || (done && line.event !== "done")) return false;
    const data = line.data || {};
    const before = item.content;
    if (line.event === "meta" && data.content_type) item.content_type = data.content_type;
    else if (line.event === "text" && !item.error) item.content += data.text ?? "";
    else if (line.event === "replace_response" && !item.error) item.content = data.text ?? "";
    else if (line.event === "file") item.files.push(data);
    else if (line.event === "data") item.metadata = data.metadata ?? null;
    else if (line.event === "suggested_reply" && data.text) item.suggested.push(data.text);
    else if (line.event === "error") item.error = data.text || "The bot reported an error.";
    this.renderChat(item.bot);
    return item.content !== before || line.event === "file";
  }

  conversationOf(bot) {
    if (!this.conversations.has(bot)) this.conversations.set(bot, new PageConversation(bot));
    return this.conversations.get(bot);
  }

  // ---- confirmation --------------------------------------------------------------------

  /** As Poe asks before a bot that costs: one question at a time. */
  confirm(bot, text, settings) {
    if (this.confirmation) {
      return Promise.reject(new EmbedError("ANOTHER_CONFIRMATION_IS_OPEN",
        "sendUserMessage: another message is waiting for the user's confirmation"));
    }
    return new Promise((resolve, reject) => {
      const close = (accepted) => {
        this.confirmation = null;
        $("confirmations").replaceChildren();
        $("emulator").classList.remove("asking");
        if (accepted) resolve();
        else reject(new EmbedError("USER_REJECTED_CONFIRMATION", `sendUserMessage: the user declined to send the message to @${bot}`));
      };
      this.confirmation = { close };
      $("emulator").classList.add("asking");
      $("confirmations").replaceChildren(h("div", { class: "confirm", dataset: { testid: "confirmation", bot } },
        h("p", {}, h("strong", {}, `Send to @${bot}?`), " This bot has a cost."),
        h("blockquote", { class: "confirm-text" }, text),
        rateCard(settings.rate_card),
        settings.cost_label ? h("p", { class: "muted" }, settings.cost_label) : null,
        h("div", { class: "confirm-buttons" },
          h("button", { type: "button", class: "primary", dataset: { testid: "confirm-accept" }, onclick: () => close(true) }, "Send"),
          h("button", { type: "button", dataset: { testid: "confirm-decline" }, onclick: () => close(false) }, "Cancel"))));
      this.openDrawer();
    });
  }

  // ---- getTriggerMessage, captureCost ---------------------------------------------------

  triggerMessage() {
    return {
      messageId: "m-trigger",
      senderId: USER_ID,
      content: this.trigger.text,
      contentType: "text/markdown",
      status: "complete",
      attachments: this.trigger.attachments.map(attachmentOf),
    };
  }

  capture({ amounts }) {
    const list = $("charges");
    for (const amount of amounts) {
      const dollars = amount.amountUsdMilliCents / 100000;
      list.append(h("li", { class: "charge", dataset: { testid: "charge", amount: amount.amountUsdMilliCents } },
        h("span", { class: "amount" }, `$${dollars.toFixed(5).replace(/0{1,3}$/, "")}`),
        " ",
        amount.description || h("span", { class: "muted" }, "(no description)")));
    }
    const total = [...list.children].reduce((sum, li) => sum + Number(li.dataset.amount), 0);
    $("charges-total").textContent = `total $${(total / 100000).toFixed(5).replace(/0{1,3}$/, "")}`;
    return { success: true };
  }

  // ---- the drawer ----------------------------------------------------------------------

  bindPanel() {
    const text = $("trigger-text");
    text.value = this.trigger.text;
    text.addEventListener("input", () => { this.trigger.text = text.value; });
    $("trigger-files").addEventListener("change", async (event) => {
      const files = [...event.target.files];
      event.target.value = "";
      for (const file of files) {
        try {
          this.trigger.attachments.push(await upload(file));
        } catch (error) {
          $("trigger-error").textContent = error.message;
        }
      }
      this.renderTrigger();
    });
    $("drawer-toggle").addEventListener("click", () => $("emulator").classList.toggle("closed"));
    $("reload-app").addEventListener("click", () => this.load());
    $("chat-close").addEventListener("click", () => this.showChat(null));
  }

  openDrawer() {
    $("emulator").classList.remove("closed");
  }

  renderTrigger() {
    $("trigger-attachments").replaceChildren(...this.trigger.attachments.map((a, index) =>
      h("span", { class: "chip", dataset: { testid: "trigger-attachment" } }, a.name,
        h("button", { type: "button", class: "chip-remove", title: "Remove", onclick: () => {
          this.trigger.attachments.splice(index, 1);
          this.renderTrigger();
        } }, "×"))));
  }

  renderChats() {
    $("chats").replaceChildren(...[...this.conversations.keys()].map((bot) =>
      h("li", {}, h("button", { type: "button", class: "link-button", dataset: { testid: "chat-link", bot },
        onclick: () => this.showChat(bot) }, `@${bot}`),
      h("span", { class: "muted" }, ` ${this.conversations.get(bot).items.filter((i) => i.role === "user").length} sent`))));
  }

  showChat(bot) {
    this.shownChat = bot;
    $("chat-panel").hidden = bot === null;
    if (bot !== null) {
      this.openDrawer();
      this.renderChat(bot);
    }
  }

  /** The side panel's view of a bot's conversation, as Poe's chat would show it. */
  renderChat(bot) {
    if (bot !== this.shownChat) return;
    $("chat-title").textContent = `@${bot}`;
    const items = this.conversationOf(bot).items.map((item) => {
      const content = h("div", { class: "content" });
      renderInto(content, item.content, item.content_type);
      return h("div", { class: `message ${item.role}`, dataset: { testid: "chat-message", role: item.role, state: item.state || "" } },
        h("div", { class: "bubble" }, content,
          item.attachments && item.attachments.length ? h("div", { class: "chips" }, item.attachments.map((a) => h("span", { class: "chip" }, a.name))) : null,
          item.error ? h("div", { class: "message-error" }, item.error) : null));
    });
    $("chat-messages").replaceChildren(...items);
    $("chat-messages").scrollTop = $("chat-messages").scrollHeight;
  }
}

export function start() {
  followVersion(() => {}); // the bots answer as reloaded; the badge shows the server is there
  return new CanvasHost(document.body.dataset.canvas);
}
