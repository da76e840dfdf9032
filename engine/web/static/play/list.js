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

export function start() {
  followVersion(refresh);
}
