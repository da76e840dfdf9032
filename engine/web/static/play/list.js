// The bot list (/play/): every bot, its kind and status, and a broken file's problems.

import { badge, followVersion, getJSON, h, problemList } from "./util.js";

const STATUS_TEXT = { ok: "ok", warnings: "warnings", stale: "errors · last good answers", broken: "broken" };

function row(bot) {
  const link = h("a", { href: `/play/bots/${encodeURIComponent(bot.name)}`, class: "bot-link" }, bot.name);
  return h(
    "li",
    { class: `bot-row status-${bot.status}`, dataset: { testid: "bot-row", name: bot.name, status: bot.status } },
    h(
      "div",
      { class: "bot-row-head" },
      bot.status === "broken" ? h("span", { class: "bot-link broken" }, bot.name) : link,
      bot.kind ? badge(bot.kind, "kind", "bot-kind") : null,
      badge(STATUS_TEXT[bot.status] || bot.status, bot.status, "bot-status"),
      bot.file ? h("span", { class: "file muted" }, bot.file) : null,
    ),
    bot.description ? h("p", { class: "description", dataset: { testid: "bot-description" } }, bot.description) : null,
    bot.problems.length ? problemList(bot.problems) : null,
  );
}

async function refresh() {
  const target = document.getElementById("bots");
  try {
    const { bots } = await getJSON("/bots");
    target.replaceChildren(
      bots.length
        ? h("ul", { class: "bot-list" }, bots.map(row))
        : h("p", { class: "muted" }, "No bots yet: add a .yaml file to the bots folder."),
    );
  } catch (error) {
    target.replaceChildren(h("p", { class: "error-text" }, `Could not load the bots: ${error.message}`));
  }
}

function canvasRow(app) {
  const usable = !app.problems.length;
  return h(
    "li",
    { class: `bot-row status-${usable ? "ok" : "broken"}`, dataset: { testid: "canvas-row", name: app.name } },
    h(
      "div",
      { class: "bot-row-head" },
      usable
        ? h("a", { href: `/play/canvas/${encodeURIComponent(app.name)}`, class: "bot-link" }, app.name)
        : h("span", { class: "bot-link broken" }, app.name),
      badge(app.kind, "kind", "canvas-kind"),
      h("span", { class: "file muted" }, app.file),
    ),
    app.title ? h("p", { class: "description" }, app.title) : null,
    app.problems.length ? problemList(app.problems) : null,
  );
}

/** The canvas apps (engine/web/canvas.py), under their own heading. */
async function refreshCanvas() {
  const target = document.getElementById("canvas-apps");
  try {
    const { folder, apps } = await getJSON("/canvas");
    target.replaceChildren(
      apps.length
        ? h("ul", { class: "bot-list" }, apps.map(canvasRow))
        : h("p", { class: "muted" }, folder
          ? `No canvas apps yet: add an .html file to ${folder}.`
          : "No canvas folder: make one named canvas beside the bots folder, or start with --canvas DIR."),
    );
  } catch (error) {
    target.replaceChildren(h("p", { class: "error-text" }, `Could not load the canvas apps: ${error.message}`));
  }
}

export function start() {
  followVersion(async () => {
    await Promise.all([refresh(), refreshCanvas()]);
  });
}
