// Entry point of the playground's pages (plain ES modules, no build step): each page says
// which it is in <body data-page>.

const page = document.body.dataset.page;
const pages = {
  bot: () => import("./play/chat.js"),
  canvas: () => import("./play/canvas-host.js"),
};
const module = await (pages[page] || (() => import("./play/list.js")))();
module.start();
