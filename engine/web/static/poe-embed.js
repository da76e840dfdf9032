// window.Poe for canvas apps served by `engine play` (Poe's Embed API, as documented at
// creator.poe.com/docs/poe-embed-api). Plain script, no dependency, injected as the first
// script of the app's <head>. Inside Poe a real window.Poe exists and this does nothing, so
// the same page runs unchanged there.
//
// The app runs in a sandboxed iframe without allow-same-origin, as in Poe: it cannot read
// the playground's API itself. This half, inside the app, checks every call's arguments and
// keeps the handlers (functions never leave the page); the emulator's page around it
// (/play/static/play/canvas-host.js) talks to the bots, asks for confirmations and shows
// the panel. The two speak with postMessage: {poeEmbed: 1, id, method, args} one way,
// {poeEmbed: 1, id, reply: "resolve"|"reject"|"handler", ...} the other.
(function () {
  "use strict";
  if (typeof window.Poe !== "undefined") return;

  const ERROR_TYPES = ["UNKNOWN", "INVALID_INPUT", "USER_REJECTED_CONFIRMATION", "ANOTHER_CONFIRMATION_IS_OPEN"];
  const SEND_OPTIONS = ["attachments", "stream", "openChat", "handler", "handlerContext"];

  class PoeEmbedAPIError extends Error {
    constructor(errorType, message) {
      super(message);
      this.name = "PoeEmbedAPIError";
      this.errorType = ERROR_TYPES.includes(errorType) ? errorType : "UNKNOWN";
    }
  }

  const invalid = (message) => new PoeEmbedAPIError("INVALID_INPUT", message);
  const handlers = new Map(); // name -> function
  const pending = new Map(); // request id -> {resolve, reject, handler, context}
  let counter = 0;

  function kind(value) {
    if (value === null) return "null";
    if (Array.isArray(value)) return "an array";
    return typeof value === "object" ? "an object" : `${typeof value} ${JSON.stringify(value)}`;
  }

  function isPlainObject(value) {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
    const proto = Object.getPrototypeOf(value);
    return proto === Object.prototype || proto === null;
  }

  /** Throws INVALID_INPUT saying what is wrong with sendUserMessage's arguments. */
  function checkSend(text, options) {
    if (typeof text !== "string") throw invalid(`sendUserMessage: text must be a string, not ${kind(text)}`);
    if (!/^\s*@[A-Za-z0-9]/.test(text)) {
      throw invalid(`sendUserMessage: the text must start with @BotName (e.g. "@hello hi"), not ${JSON.stringify(text.slice(0, 40))}`);
    }
    if (options === undefined) return;
    if (!isPlainObject(options)) throw invalid(`sendUserMessage: options must be an object, not ${kind(options)}`);
    const unknown = Object.keys(options).filter((key) => !SEND_OPTIONS.includes(key));
    if (unknown.length) {
      throw invalid(`sendUserMessage: unknown option ${unknown.join(", ")}; the options are ${SEND_OPTIONS.join(", ")}`);
    }
    const { attachments, stream, openChat, handler, handlerContext } = options;
    if (attachments !== undefined) {
      if (!Array.isArray(attachments)) throw invalid(`sendUserMessage: attachments must be an array of File, not ${kind(attachments)}`);
      attachments.forEach((file, index) => {
        if (!(file instanceof File)) throw invalid(`sendUserMessage: attachments[${index}] must be a File, not ${kind(file)}`);
      });
    }
    for (const [name, value] of [["stream", stream], ["openChat", openChat]]) {
      if (value !== undefined && typeof value !== "boolean") {
        throw invalid(`sendUserMessage: ${name} must be true or false, not ${kind(value)}`);
      }
    }
    if (handler !== undefined) {
      if (typeof handler !== "string") throw invalid(`sendUserMessage: handler must be a handler's name, not ${kind(handler)}`);
      if (!handlers.has(handler)) {
        throw invalid(`sendUserMessage: no handler registered as "${handler}": call Poe.registerHandler("${handler}", fn) first`);
      }
    }
    if (handlerContext !== undefined && !isPlainObject(handlerContext)) {
      throw invalid(`sendUserMessage: handlerContext must be an object, not ${kind(handlerContext)}`);
    }
  }

  /** Throws INVALID_INPUT saying what is wrong with captureCost's arguments. */
  function checkCost(amounts, options) {
    if (!Array.isArray(amounts) || amounts.length === 0) {
      throw invalid(`captureCost: amounts must be a non-empty array of {amountUsdMilliCents, description?}, not ${kind(amounts)}`);
    }
    amounts.forEach((amount, index) => {
      const where = `captureCost: amounts[${index}]`;
      if (!isPlainObject(amount)) throw invalid(`${where} must be an object, not ${kind(amount)}`);
      const value = amount.amountUsdMilliCents;
      if (!Number.isInteger(value) || value <= 0) {
        throw invalid(`${where}.amountUsdMilliCents must be a positive whole number of milli-cents (1000 = 1 cent), not ${kind(value)}`);
      }
      if (amount.description !== undefined && typeof amount.description !== "string") {
        throw invalid(`${where}.description must be a string, not ${kind(amount.description)}`);
      }
      const extra = Object.keys(amount).filter((key) => key !== "amountUsdMilliCents" && key !== "description");
      if (extra.length) throw invalid(`${where} has unknown key ${extra.join(", ")}`);
    });
    if (options === undefined) return;
    if (!isPlainObject(options)) throw invalid(`captureCost: options must be an object, not ${kind(options)}`);
    if (options.logChargeOutcome !== undefined && typeof options.logChargeOutcome !== "boolean") {
      throw invalid(`captureCost: options.logChargeOutcome must be true or false, not ${kind(options.logChargeOutcome)}`);
    }
  }

  /** Sends one call to the emulator's page; the promise settles with its reply. */
  function call(method, args, extra) {
    return new Promise((resolve, reject) => {
      if (window.parent === window) {
        reject(new PoeEmbedAPIError("UNKNOWN",
          `Poe.${method}: this page is not inside the emulator; open it at /play/canvas/<name>, not at its /app address`));
        return;
      }
      const id = `r${++counter}`;
      pending.set(id, { resolve, reject, ...extra });
      try {
        window.parent.postMessage({ poeEmbed: 1, id, method, args }, "*");
      } catch (error) {
        pending.delete(id);
        reject(new PoeEmbedAPIError("UNKNOWN", `Poe.${method}: ${error && error.message}`));
      }
    });
  }

  /** Replies from the emulator's page: a call settled, or a result for a handler. */
  window.addEventListener("message", (event) => {
    const data = event.data;
    if (event.source !== window.parent || !data || data.poeEmbed !== 1) return;
    const entry = pending.get(data.id);
    if (!entry) return;
    if (data.reply === "resolve") {
      entry.resolve(data.value);
      if (!entry.handler) pending.delete(data.id); // a handler still hears the answer
    } else if (data.reply === "reject") {
      pending.delete(data.id);
      entry.reject(new PoeEmbedAPIError(data.errorType, data.message));
    } else if (data.reply === "handler") {
      if (data.result.status !== "incomplete") pending.delete(data.id);
      const fn = handlers.get(entry.handler); // looked up now: an unregistered one hears nothing
      if (!fn) return;
      try {
        fn(data.result, entry.context);
      } catch (error) {
        console.error(`Poe handler "${entry.handler}" threw:`, error);
      }
    }
  });

  const Poe = {
    APIError: PoeEmbedAPIError,

    async sendUserMessage(text, options) {
      checkSend(text, options);
      const opts = options || {};
      const args = {
        text,
        attachments: opts.attachments || [],
        stream: opts.stream === true,
        openChat: opts.openChat === true,
        handler: opts.handler !== undefined,
      };
      return call("sendUserMessage", args, { handler: opts.handler, context: opts.handlerContext || {} });
    },

    registerHandler(name, func) {
      if (typeof name !== "string" || name === "") {
        throw invalid(`registerHandler: name must be a non-empty string, not ${kind(name)}`);
      }
      if (typeof func !== "function") throw invalid(`registerHandler: func must be a function, not ${kind(func)}`);
      handlers.set(name, func);
      return () => {
        if (handlers.get(name) === func) handlers.delete(name);
      };
    },

    async getTriggerMessage() {
      return call("getTriggerMessage", {});
    },

    async captureCost(amounts, options) {
      checkCost(amounts, options);
      const clean = amounts.map((a) => (a.description === undefined
        ? { amountUsdMilliCents: a.amountUsdMilliCents }
        : { amountUsdMilliCents: a.amountUsdMilliCents, description: a.description }));
      return call("captureCost", { amounts: clean, options: options || {} });
    },
  };

  Object.defineProperty(window, "Poe", { value: Object.freeze(Poe), configurable: true, enumerable: true });
})();
