// Parameter controls from the bot's settings, in Poe's schema (api_version "2"): sections,
// tabs, dividers, text fields and areas, drop-downs, toggles, sliders, aspect ratios and
// condition groups. Their values go on each new user message as `parameters`.

import { h } from "./util.js";

/** Every control of the schema, conditions' inner controls included. */
function* allControls(schema) {
  for (const section of (schema && schema.sections) || []) {
    const groups = [section.controls || [], ...(section.tabs || []).map((tab) => tab.controls || [])];
    for (const group of groups) {
      for (const control of group) {
        yield control;
        if (control.control === "condition") yield* control.controls || [];
      }
    }
  }
}

/** The value a control starts with; a missing default is inferred as the engine does. */
export function defaultOf(control) {
  if (control.default_value !== undefined && control.default_value !== null) return control.default_value;
  switch (control.control) {
    case "drop_down":
    case "aspect_ratio":
      return control.options && control.options.length ? optionValue(control, control.options[0]) : null;
    case "slider":
      return control.min_value;
    case "toggle_switch":
      return false;
    default:
      return "";
  }
}

function optionValue(control, option) {
  // An aspect ratio without a value is known by its shape.
  if (control.control === "aspect_ratio") return option.value ?? `${option.width}:${option.height}`;
  return option.value;
}

/** Defaults of every named control; the first control of a name wins, as in the engine. */
export function defaults(schema) {
  const values = {};
  for (const control of allControls(schema)) {
    if (control.parameter_name && !(control.parameter_name in values)) {
      values[control.parameter_name] = defaultOf(control);
    }
  }
  return values;
}

function operand(side, values) {
  if (side && "parameter_name" in side) return values[side.parameter_name];
  return side ? side.literal : undefined;
}

/** Evaluates a condition control's `left <comparator> right` against current values. */
export function holds(condition, values) {
  const left = operand(condition.left, values);
  const right = operand(condition.right, values);
  switch (condition.comparator) {
    case "eq": return left === right;
    case "ne": return left !== right;
    case "gt": return left > right;
    case "ge": return left >= right;
    case "lt": return left < right;
    case "le": return left <= right;
    default: return false;
  }
}

export class Controls {
  /** `onChange(values)` is called after each user change (the page stores them). */
  constructor(container, panel, onChange) {
    this.container = container;
    this.panel = panel;
    this.onChange = onChange;
    this.schema = null;
    this.values = {};
    this.conditions = [];
    this.openTabs = {};
  }

  /** Renders the schema, keeping the user's values for names the new schema still has. */
  update(schema, saved = {}) {
    this.schema = schema;
    const fresh = defaults(schema);
    for (const name of Object.keys(fresh)) {
      const keep = name in this.values ? this.values[name] : saved[name];
      if (keep !== undefined && typeof keep === typeof fresh[name]) fresh[name] = keep;
    }
    this.values = fresh;
    this.render();
  }

  /** The values Poe would put on the user message: a copy, so later changes don't leak in. */
  current() {
    return structuredClone(this.values);
  }

  render() {
    const sections = (this.schema && this.schema.sections) || [];
    this.panel.hidden = sections.length === 0;
    this.conditions = [];
    this.container.replaceChildren(...sections.map((section, index) => this.section(section, index)));
    this.applyConditions();
  }

  set(name, value) {
    this.values[name] = value;
    // Controls sharing a name show the same value.
    for (const el of this.container.querySelectorAll(`[data-param="${CSS.escape(name)}"]`)) {
      el.dispatchEvent(new CustomEvent("sync", { detail: value }));
    }
    this.applyConditions();
    this.onChange(this.current());
  }

  applyConditions() {
    for (const { el, condition } of this.conditions) el.hidden = !holds(condition, this.values);
  }

  section(section, index) {
    const body = h("div", { class: "section-body" });
    if (section.controls) body.append(...section.controls.map((control) => this.control(control)));
    if (section.tabs && section.tabs.length) body.append(this.tabs(section.tabs, index));
    const title = section.name || (section.collapsed_by_default ? "More options" : null);
    if (!title) return h("div", { class: "section", dataset: { testid: "section" } }, body);
    return h(
      "details",
      { class: "section", open: !section.collapsed_by_default, dataset: { testid: "section" } },
      h("summary", {}, title),
      body,
    );
  }

  tabs(tabs, sectionIndex) {
    const chosen = this.openTabs[sectionIndex] ?? 0;
    const panels = tabs.map((tab, i) =>
      h("div", { class: "tab-panel", hidden: i !== chosen, dataset: { testid: "tab-panel" } },
        (tab.controls || []).map((control) => this.control(control))),
    );
    const buttons = tabs.map((tab, i) =>
      h("button", {
        type: "button",
        class: i === chosen ? "tab active" : "tab",
        dataset: { testid: "tab" },
        onclick: () => {
          this.openTabs[sectionIndex] = i;
          buttons.forEach((b, j) => b.classList.toggle("active", j === i));
          panels.forEach((p, j) => { p.hidden = j !== i; });
        },
      }, tab.name || `Tab ${i + 1}`),
    );
    return h("div", { class: "tabs" }, h("div", { class: "tab-row" }, buttons), panels);
  }

  control(control) {
    switch (control.control) {
      case "divider": return h("hr", { class: "divider" });
      case "condition": return this.condition(control);
      case "text_field": return this.field(control, this.text(control, "input"));
      case "text_area": return this.field(control, this.text(control, "textarea"));
      case "drop_down": return this.field(control, this.dropDown(control));
      case "toggle_switch": return this.toggle(control);
      case "slider": return this.slider(control);
      case "aspect_ratio": return this.field(control, this.aspectRatio(control));
      default:
        return h("p", { class: "muted" }, `Unknown control ${JSON.stringify(control.control)}`);
    }
  }

  condition(control) {
    const el = h("div", { class: "condition", dataset: { testid: "condition" } },
      (control.controls || []).map((inner) => this.control(inner)));
    this.conditions.push({ el, condition: control.condition || {} });
    return el;
  }

  field(control, input, extra = null) {
    return h(
      "div",
      { class: `control control-${control.control}`, dataset: { testid: `control-${control.parameter_name}` } },
      h("label", { class: "label" }, control.label, extra),
      control.description ? h("div", { class: "description muted" }, control.description) : null,
      input,
    );
  }

  hooks(control) {
    return { testid: `param-${control.parameter_name}`, param: control.parameter_name };
  }

  text(control, tag) {
    const input = h(tag, {
      class: "input",
      placeholder: control.placeholder,
      rows: tag === "textarea" ? 3 : null,
      dataset: this.hooks(control),
      oninput: (event) => this.set(control.parameter_name, event.target.value),
      onsync: (event) => { if (input.value !== event.detail) input.value = event.detail; },
    });
    input.value = this.values[control.parameter_name] ?? "";
    return input;
  }

  dropDown(control) {
    const select = h(
      "select",
      { class: "input", dataset: this.hooks(control),
        onchange: (event) => this.set(control.parameter_name, event.target.value),
        onsync: (event) => { select.value = event.detail; } },
      (control.options || []).map((option) => h("option", { value: option.value }, option.name)),
    );
    select.value = this.values[control.parameter_name];
    return select;
  }

  toggle(control) {
    const input = h("input", {
      type: "checkbox",
      role: "switch",
      dataset: this.hooks(control),
      onchange: (event) => this.set(control.parameter_name, event.target.checked),
      onsync: (event) => { input.checked = event.detail; },
    });
    input.checked = Boolean(this.values[control.parameter_name]);
    return h(
      "div",
      { class: "control control-toggle_switch", dataset: { testid: `control-${control.parameter_name}` } },
      h("label", { class: "switch-row" }, h("span", { class: "label" }, control.label), input,
        h("span", { class: "switch" })),
      control.description ? h("div", { class: "description muted" }, control.description) : null,
    );
  }

  slider(control) {
    const shown = h("output", { class: "slider-value", dataset: { testid: `value-${control.parameter_name}` } });
    const input = h("input", {
      type: "range",
      min: control.min_value,
      max: control.max_value,
      step: control.step,
      dataset: this.hooks(control),
      oninput: (event) => this.set(control.parameter_name, Number(event.target.value)),
      onsync: (event) => { input.value = String(event.detail); shown.textContent = String(event.detail); },
    });
    input.value = String(this.values[control.parameter_name]);
    shown.textContent = String(this.values[control.parameter_name]);
    return this.field(control, input, shown);
  }

  aspectRatio(control) {
    const group = h("div", { class: "ratios", role: "radiogroup", dataset: this.hooks(control) });
    const select = (value) => {
      for (const box of group.children) {
        const on = box.dataset.value === value;
        box.classList.toggle("active", on);
        box.setAttribute("aria-checked", String(on));
      }
    };
    for (const option of control.options || []) {
      const value = optionValue(control, option);
      const scale = 28 / Math.max(option.width, option.height);
      group.append(
        h(
          "button",
          { type: "button", class: "ratio", role: "radio", title: value, dataset: { value, testid: "ratio" },
            onclick: () => this.set(control.parameter_name, value) },
          h("span", { class: "ratio-box",
            style: `width:${Math.round(option.width * scale)}px;height:${Math.round(option.height * scale)}px` }),
          h("span", { class: "ratio-label" }, `${option.width}:${option.height}`),
        ),
      );
    }
    group.addEventListener("sync", (event) => select(event.detail));
    select(this.values[control.parameter_name]);
    return group;
  }
}
