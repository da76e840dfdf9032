// Entry point of the playground's pages (plain ES modules, no build step): each page says
// which it is in <body data-page>.

const page = document.body.dataset.page;
const module = page === "bot" ? await import("./play/chat.js") : await import("./play/list.js");
module.start();
