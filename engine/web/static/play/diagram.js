// The bot's picture: its Mermaid text drawn by the vendored mermaid (strict security, no
// auto start), redrawn after each turn with the nodes the engine took given class `taken`.

const SCRIPT = new URL("../vendor/mermaid.min.js", import.meta.url).href;
let loading = null;

/** mermaid is large: load it once, after the chat is usable. */
function loadMermaid() {
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = SCRIPT;
      script.onload = () => {
        window.mermaid.initialize({
          startOnLoad: false,
          securityLevel: "strict",
          theme: "neutral",
          flowchart: { useMaxWidth: true },
        });
        resolve(window.mermaid);
      };
      script.onerror = () => reject(new Error("could not load mermaid.min.js"));
      document.head.append(script);
    });
  }
  return loading;
}

/**
 * Where mermaid draws before it hands back the SVG: made once, out of the page's flow.
 * Without it mermaid adds its scratch element to the body, a flex column here, and the
 * whole page's layout jumped while a diagram was drawn (after every turn): a click on
 * Send at that moment could land elsewhere and be lost.
 */
function scratchArea() {
  let area = document.getElementById("diagram-scratch");
  if (!area) {
    area = document.createElement("div");
    area.id = "diagram-scratch";
    area.className = "diagram-scratch";
    area.setAttribute("aria-hidden", "true");
    document.body.append(area);
  }
  return area;
}

export class Diagram {
  constructor(container) {
    this.container = container;
    this.scratch = scratchArea();
    this.text = null;
    this.taken = [];
    this.renders = 0;
    this.queue = Promise.resolve();
    // Readable size, scrolled to what the turn took; a click fits the whole picture.
    container.title = "Click to fit the whole diagram, or to see it at full size";
    container.addEventListener("click", () => {
      container.classList.toggle("fit");
      this.reveal();
    });
  }

  /** A new diagram (the bot reloaded): drawn without any highlight. */
  show(text) {
    this.text = text;
    this.taken = [];
    return this.draw();
  }

  /** Highlights the nodes one turn took. */
  highlight(nodes) {
    this.taken = nodes || [];
    return this.draw();
  }

  draw() {
    // One render at a time, always of the latest text.
    this.queue = this.queue.then(() => this.render()).catch(() => {});
    return this.queue;
  }

  /** Scrolls the diagram's own box (not the page) so the first node taken is in view. */
  reveal() {
    const node = this.container.querySelector("svg .taken");
    if (!node) return;
    const box = this.container.getBoundingClientRect();
    const at = node.getBoundingClientRect();
    this.container.scrollTop += at.top - box.top - box.height / 2 + at.height / 2;
    this.container.scrollLeft += at.left - box.left - box.width / 2 + at.width / 2;
  }

  async render() {
    const container = this.container;
    if (!this.text) {
      container.innerHTML = '<p class="muted">No diagram for this bot.</p>';
      return;
    }
    let source = this.text;
    if (this.taken.length) source += `\nclass ${this.taken.join(",")} taken\n`;
    try {
      const mermaid = await loadMermaid();
      this.renders += 1;
      const { svg } = await mermaid.render(`diagram-${this.renders}`, source, this.scratch);
      container.innerHTML = svg;
      const el = container.querySelector("svg");
      if (el) el.dataset.testid = "diagram-svg";
      container.dataset.taken = this.taken.join(",");
      container.dataset.renders = String(this.renders);
      this.reveal();
    } catch (error) {
      container.replaceChildren();
      const message = document.createElement("pre");
      message.className = "error-text";
      message.dataset.testid = "diagram-error";
      message.textContent = `The diagram could not be drawn: ${error.message || error}`;
      container.append(message);
    }
  }
}
