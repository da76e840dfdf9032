// A canvas app built by `python -m engine canvas build`: the form's fields checked here,
// its values turned into one message, sent through Poe's public Embed API (window.Poe)
// and the answer shown as it streams. Only registerHandler, sendUserMessage and the
// errorType of a thrown PoeEmbedAPIError are used; nothing is loaded from the network.
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("canvas-config").textContent);
  var form = document.getElementById("canvas-form");
  var answers = document.getElementById("answers");
  var submitButton = document.getElementById("submit");
  var noPoe = document.getElementById("no-poe");
  var registered = false;
  var current = null; // the exchange awaiting its answer: {requestId, block, values}
  var counter = 0;

  // --- Poe -----------------------------------------------------------------------------

  function poe() {
    var api = window.Poe;
    return api && typeof api.sendUserMessage === "function" ? api : null;
  }

  function ready() {
    var api = poe();
    if (!api) {
      noPoe.hidden = false;
      return null;
    }
    noPoe.hidden = true;
    if (!registered) {
      api.registerHandler(config.handler, onResult); // before any send, as Poe asks
      registered = true;
    }
    return api;
  }

  function describeError(error) {
    var type = error && error.errorType;
    var text = (error && error.message) || String(error);
    if (type === "USER_REJECTED_CONFIRMATION") return "You declined, so nothing was sent.";
    if (type === "ANOTHER_CONFIRMATION_IS_OPEN") {
      return "Another confirmation is already open: answer it, then send again.";
    }
    if (type === "INVALID_INPUT") return "Poe refused the message: " + text;
    return "Something went wrong: " + text;
  }

  // --- the message template --------------------------------------------------------------
  // The program engine/canvas/template.py compiled from the YAML's Jinja: text,
  // {"var": name} and {"if": [[test, body]...], "else": body}; truth as Jinja's.

  function truthy(value) {
    return Array.isArray(value) ? value.length > 0 : Boolean(value);
  }

  function holds(test, values) {
    if ("var" in test) return truthy(values[test["var"]]);
    if ("not" in test) return !holds(test["not"], values);
    if ("and" in test) return holds(test["and"][0], values) && holds(test["and"][1], values);
    if ("or" in test) return holds(test["or"][0], values) || holds(test["or"][1], values);
    var pair = test.eq || test.ne;
    return (values[pair[0]] === pair[1]) === ("eq" in test);
  }

  function render(program, values) {
    var text = "";
    program.forEach(function (node) {
      if (typeof node === "string") {
        text += node;
      } else if ("var" in node) {
        text += String(values[node["var"]]);
      } else {
        var branch = node["if"].find(function (pair) { return holds(pair[0], values); });
        text += render(branch ? branch[1] : node["else"], values);
      }
    });
    return text;
  }

  // --- the form ----------------------------------------------------------------------------

  function element(field) {
    return document.getElementById("field-" + field.name);
  }

  function valueOf(field) {
    var el = element(field);
    if (field.kind === "toggle") return el.checked;
    if (field.kind === "file") return Array.prototype.slice.call(el.files || []);
    return el.value.trim();
  }

  function isEmpty(value) {
    return value === "" || value === false || (Array.isArray(value) && value.length === 0);
  }

  function characters(text) {
    return Array.from(text).length; // code points, as the engine counts
  }

  function typeAllowed(file, types) {
    var type = (file.type || "").toLowerCase();
    return types.some(function (allowed) {
      var want = allowed.toLowerCase().split("/");
      var have = type.split("/");
      return want.length === 2 && have.length === 2 &&
        (want[0] === "*" || want[0] === have[0]) && (want[1] === "*" || want[1] === have[1]);
    });
  }

  function problem(field, value) {
    if (isEmpty(value)) {
      if (!field.required) return null;
      if (field.kind === "toggle") return "Please turn this on.";
      if (field.kind === "file") return "Please choose a file.";
      if (field.kind === "choice") return "Please choose one.";
      return "Please fill this in.";
    }
    if (field.kind === "text" || field.kind === "long_text") {
      var count = characters(value);
      if (field.min_length !== null && count < field.min_length) {
        return "Use at least " + field.min_length + " characters.";
      }
      if (field.max_length !== null && count > field.max_length) {
        return "Use at most " + field.max_length + " characters (this has " + count + ").";
      }
      if (field.pattern) {
        var pattern = new RegExp("^(?:" + field.pattern.source + ")$", field.pattern.flags);
        if (!pattern.test(value)) return "This is not in the expected format.";
      }
    } else if (field.kind === "number") {
      var number = Number(value);
      if (!isFinite(number)) return "Enter a number.";
      if (field.integer && !Number.isInteger(number)) return "Enter a whole number.";
      if (field.min !== null && number < field.min) return "Enter " + field.min + " or more.";
      if (field.max !== null && number > field.max) return "Enter " + field.max + " or less.";
    } else if (field.kind === "choice") {
      if (field.options.indexOf(value) < 0) return "Choose one of the options.";
    } else if (field.kind === "file") {
      if (value.length > field.max_files) return "Choose at most " + field.max_files + " files.";
      for (var i = 0; i < value.length; i++) {
        if (field.types.length && !typeAllowed(value[i], field.types)) {
          return value[i].name + " is not an accepted type (" + field.types.join(", ") + ").";
        }
        if (field.max_bytes !== null && value[i].size > field.max_bytes) {
          return value[i].name + " is larger than " + field.max_bytes / 1e6 + " MB.";
        }
      }
    }
    return null;
  }

  function showProblem(field, message) {
    var el = element(field);
    var box = document.getElementById("field-" + field.name + "-error");
    box.textContent = message || "";
    box.hidden = !message;
    if (message) el.setAttribute("aria-invalid", "true");
    else el.removeAttribute("aria-invalid");
  }

  function checkedValues() {
    var values = {};
    var first = null;
    config.inputs.forEach(function (field) {
      var value = valueOf(field);
      var message = problem(field, value);
      if (message && field.invalid) message = field.invalid;
      showProblem(field, message);
      if (message && !first) first = field;
      values[field.name] = value;
    });
    if (first) {
      element(first).focus();
      return null;
    }
    return values;
  }

  function attachmentsOf(values) {
    var files = [];
    config.inputs.forEach(function (field) {
      if (field.kind === "file") files = files.concat(values[field.name]);
    });
    return files;
  }

  // --- the answer ----------------------------------------------------------------------------

  function showMarkdown(el, text) {
    if (window.marked && window.DOMPurify) {
      el.innerHTML = window.DOMPurify.sanitize(window.marked.parse(text, { async: false }));
    } else {
      el.textContent = text;
    }
  }

  function safeUrl(url) {
    return /^(https?:|blob:|data:image\/)/i.test(url || "") ? url : null;
  }

  function showAttachments(el, attachments) {
    el.textContent = "";
    (attachments || []).forEach(function (attachment) {
      var url = safeUrl(attachment.url);
      if (!url) return;
      var item = document.createElement("div");
      item.className = "attachment";
      if (attachment.isInline && /^image\//.test(attachment.mimeType || "")) {
        var image = document.createElement("img");
        image.src = url;
        image.alt = attachment.name || "";
        item.appendChild(image);
      } else {
        var link = document.createElement("a");
        link.href = url;
        link.textContent = attachment.name || url;
        link.rel = "noopener";
        link.target = "_blank";
        item.appendChild(link);
      }
      el.appendChild(item);
    });
  }

  function responseElement(block, index) {
    var list = block.querySelector(".responses");
    while (list.children.length <= index) {
      var response = document.createElement("div");
      response.className = "response";
      var body = document.createElement("div");
      body.className = "content";
      var files = document.createElement("div");
      files.className = "attachments";
      var status = document.createElement("p");
      status.className = "error";
      status.hidden = true;
      response.appendChild(body);
      response.appendChild(files);
      response.appendChild(status);
      list.appendChild(response);
    }
    return list.children[index];
  }

  function showResponses(block, responses) {
    responses.forEach(function (message, index) {
      var el = responseElement(block, index);
      var body = el.querySelector(".content");
      var content = message.content || "";
      if (config.answer.format === "text" || message.contentType === "text/plain") {
        body.textContent = content;
      } else {
        showMarkdown(body, content);
      }
      showAttachments(el.querySelector(".attachments"), message.attachments);
      var status = el.querySelector(".error");
      var failed = message.status === "error";
      status.textContent = failed ? message.statusText || "The bot could not answer." : "";
      status.hidden = !failed;
    });
  }

  function showFailure(block, text) {
    var box = block.querySelector(".failure");
    box.textContent = text;
    box.hidden = false;
  }

  function showReplies(block, values) {
    var box = block.querySelector(".replies");
    config.answer.replies.forEach(function (program) {
      var text = render(program, values).trim();
      if (!text) return;
      var button = document.createElement("button");
      button.type = "button";
      button.className = "reply";
      button.textContent = text;
      button.addEventListener("click", function () {
        send("@" + config.bot + " " + text, [], values);
      });
      box.appendChild(button);
    });
  }

  function onResult(result, context) {
    if (!current || !context || context.requestId !== current.requestId) return;
    var block = current.block;
    showResponses(block, (result && result.responses) || []);
    if (result.status === "incomplete") {
      block.classList.add("streaming");
      return;
    }
    block.classList.remove("streaming");
    if (result.status === "error") {
      var failed = (result.responses || []).some(function (m) { return m.status === "error"; });
      if (!failed) showFailure(block, "The bot could not answer.");
    } else {
      showReplies(block, current.values);
    }
    finish();
  }

  // --- sending -------------------------------------------------------------------------------

  function newExchange(text) {
    var block = document.createElement("article");
    block.className = "exchange streaming";
    var sent = document.createElement("p");
    sent.className = "sent";
    sent.textContent = text;
    var responses = document.createElement("div");
    responses.className = "responses";
    var failure = document.createElement("p");
    failure.className = "error failure";
    failure.setAttribute("role", "alert");
    failure.hidden = true;
    var replies = document.createElement("div");
    replies.className = "replies";
    block.appendChild(sent);
    block.appendChild(responses);
    block.appendChild(failure);
    block.appendChild(replies);
    answers.appendChild(block);
    block.scrollIntoView({ block: "nearest" });
    return block;
  }

  function setBusy(busy) {
    submitButton.disabled = busy;
    document.querySelectorAll(".reply").forEach(function (button) { button.disabled = busy; });
    form.setAttribute("aria-busy", busy ? "true" : "false");
  }

  function finish() {
    current = null;
    setBusy(false);
  }

  function send(text, attachments, values) {
    var api = ready();
    if (!api || current) return;
    counter += 1;
    var requestId = "canvas-" + counter + "-" + Date.now();
    var block = newExchange(text);
    current = { requestId: requestId, block: block, values: values };
    setBusy(true);
    var options = {
      handler: config.handler,
      handlerContext: { requestId: requestId },
      stream: config.stream,
      openChat: config.open_chat
    };
    if (attachments.length) options.attachments = attachments;
    var sending;
    try {
      sending = Promise.resolve(api.sendUserMessage(text, options));
    } catch (error) {
      sending = Promise.reject(error);
    }
    sending.then(function (outcome) {
      if (outcome && outcome.success === false && current && current.block === block) {
        block.classList.remove("streaming");
        showFailure(block, "Poe did not send the message.");
        finish();
      }
    }, function (error) {
      if (current && current.block === block) {
        block.classList.remove("streaming");
        showFailure(block, describeError(error));
        finish();
      }
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var values = checkedValues();
    if (!values) return;
    if (!ready()) {
      noPoe.scrollIntoView({ block: "nearest" });
      return;
    }
    send(render(config.message, values), attachmentsOf(values), values);
  });

  config.inputs.forEach(function (field) {
    var el = element(field);
    var clear = function () { showProblem(field, null); };
    el.addEventListener("input", clear);
    el.addEventListener("change", clear);
  });

  var description = document.getElementById("description");
  if (description) showMarkdown(description, description.textContent);
  ready();
})();
