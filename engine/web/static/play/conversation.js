// One bot's conversation as Poe keeps it: messages with their ids, timestamps, attachments,
// parameters and each bot answer's last `data` metadata, split by chat breaks ("Clear
// context"). Stored in sessionStorage per bot, so a reload keeps the chat.

import { newId, nowMicros } from "./util.js";

export class Conversation {
  constructor(bot) {
    this.key = `play:conversation:${bot}`;
    const saved = this.load();
    this.conversationId = saved.conversation_id || newId("c");
    this.items = saved.items || [];
    this.params = saved.params || {};
    for (const item of this.items) {
      // An answer still streaming when the page went away will never finish.
      if (item.role === "bot" && item.state === "streaming") item.state = "interrupted";
    }
  }

  load() {
    try {
      return JSON.parse(sessionStorage.getItem(this.key) || "{}") || {};
    } catch {
      return {};
    }
  }

  save() {
    const data = { conversation_id: this.conversationId, items: this.items, params: this.params };
    try {
      sessionStorage.setItem(this.key, JSON.stringify(data));
    } catch {
      // Storage full: the chat goes on, only a reload would lose it.
    }
  }

  addUser(content, attachments, parameters) {
    const message = {
      role: "user",
      content,
      content_type: "text/markdown",
      message_id: newId("m"),
      timestamp: nowMicros(),
      attachments,
      parameters,
    };
    this.items.push(message);
    this.save();
    return message;
  }

  addBot() {
    const message = {
      role: "bot",
      content: "",
      content_type: "text/markdown",
      message_id: null,
      timestamp: nowMicros(),
      metadata: null,
      files: [],
      suggested: [],
      error: null,
      state: "streaming",
    };
    this.items.push(message);
    return message;
  }

  /** A chat break: later turns send only what follows, under a new conversation id. */
  clearContext() {
    if (!this.items.length || this.items[this.items.length - 1].role === "break") return false;
    this.items.push({ role: "break", timestamp: nowMicros() });
    this.conversationId = newId("c");
    this.save();
    return true;
  }

  reset() {
    this.items = [];
    this.conversationId = newId("c");
    this.save();
  }

  /** The query Poe would send: every message after the last chat break, oldest first. */
  query() {
    const start = this.items.map((item) => item.role).lastIndexOf("break") + 1;
    return this.items
      .slice(start)
      .filter((item) => item.role === "user" || (item.role === "bot" && answered(item)))
      .map(toProtocol);
  }

  lastBot() {
    const last = this.items[this.items.length - 1];
    return last && last.role === "bot" ? last : null;
  }
}

/** A bot message goes back to the bot when it said something or stored metadata. */
function answered(message) {
  return message.content !== "" || message.metadata !== null;
}

function toProtocol(message) {
  const base = {
    role: message.role,
    content: message.content,
    content_type: message.content_type || "text/markdown",
    message_id: message.message_id || "",
    timestamp: message.timestamp,
  };
  if (message.role === "bot") return { ...base, metadata: message.metadata ?? null };
  return { ...base, attachments: message.attachments || [], parameters: message.parameters || {} };
}
