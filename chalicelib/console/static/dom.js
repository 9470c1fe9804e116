// DOM helpers. Text always goes in as text (never as HTML): every value the console shows came
// from a customer, a vendor or a webhook.

/** An element: h("button", {type: "button", onclick: f}, "Replay"). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
}

/** Replace a node's content. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** An error as the operator reads it: the API's message, and its code when there is one. */
export function errorBox(error, context) {
  const message = error && error.message ? error.message : String(error);
  return h("div", {class: "notice error", role: "alert"},
    context ? h("strong", {}, `${context}: `) : null, message,
    error && error.code ? h("span", {class: "code"}, ` (${error.code}${error.status ? `, HTTP ${error.status}` : ""})`) : null);
}

export function emptyBox(text) {
  return h("p", {class: "notice empty"}, text);
}

export function okBox(text) {
  return h("div", {class: "notice ok", role: "status"}, text);
}

export function loading(text = "Loading…") {
  return h("p", {class: "notice loading", "aria-busy": "true"}, text);
}

/** A time as the operator's clock shows it, with the UTC value as its tooltip. */
export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return h("time", {datetime: iso, title: iso}, date.toLocaleString());
}

/** JSON, pretty-printed, in a scrollable block. */
export function jsonBlock(value) {
  return h("pre", {class: "json", tabindex: "0"}, JSON.stringify(value, null, 2));
}

/** A definition list of label → value pairs; empty values show a dash. */
export function facts(pairs) {
  return h("dl", {class: "facts"}, pairs.map(([label, value]) => [
    h("dt", {}, label),
    h("dd", {}, value === undefined || value === null || value === "" ? "—" : value),
  ]));
}

/** A table from column headings and rows of cells. */
export function table(headings, rows, caption) {
  return h("table", {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, headings.map((text) => h("th", {scope: "col"}, text)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell))))));
}

/** A labelled form field: label text, then the control. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 10)}`;
  control.id = id;
  return h("div", {class: "field"},
    h("label", {for: id}, label), control, hint ? h("small", {class: "hint"}, hint) : null);
}

/** The routing trace: every rule evaluated, whether it matched, and why. */
export function traceList(trace) {
  if (!trace || trace.length === 0) return emptyBox("No rule was evaluated (no trace).");
  return h("ol", {class: "trace"}, trace.map((step) =>
    h("li", {class: step.matched ? "matched" : "unmatched"},
      h("span", {class: "badge"}, step.matched ? "matched" : "no match"), " ",
      h("strong", {}, step.rule), step.reason ? ` — ${step.reason}` : "")));
}

/** The decision a contact was routed with. */
export function decisionFacts(routing) {
  if (!routing) return emptyBox("No routing decision.");
  const skills = Object.entries(routing.skills || {}).map(([name, level]) => `${name}: ${level}`).join(", ");
  return facts([
    ["Queue", routing.queue], ["Priority", routing.priority], ["Skills", skills],
    ["Tags", (routing.tags || []).join(", ")], ["Destinations", (routing.destinations || []).join(", ")],
    ["Parked", routing.parked], ["Suppressed", routing.suppressed], ["Rules version", routing.rules_version],
  ]);
}
