// Exceptions: contacts rules parked for a person, oldest first; read the trace, release with a route.

import {api} from "./api.js";
import {decisionFacts, errorBox, facts, field, fill, h, loading, okBox, traceList, when} from "./dom.js";
import {pagedList} from "./paging.js";
import {guard, session} from "./session.js";

const PRIORITIES = ["low", "normal", "high", "urgent"];

export async function renderExceptions(view) {
  view.append(h("p", {class: "lead"},
    "Contacts a routing rule parked for manual handling, oldest first. Read why, then release each with the route it should take."));
  pagedList(view, {
    path: "/v1/exceptions", label: "parked contact", labels: "parked contacts", emptyText: "The exception queue is empty: nothing is waiting.",
    renderItems: (items) => items.map(entryCard),
  });
}

function entryCard(entry) {
  const details = h("div", {class: "details"});
  const toggle = h("button", {type: "button", "aria-expanded": "false"}, "Show contact and trace");
  guard(toggle, "customers:read");
  toggle.addEventListener("click", async () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    toggle.textContent = open ? "Hide contact and trace" : "Show contact and trace";
    if (!open) {
      details.replaceChildren();
      return;
    }
    fill(details, loading());
    try {
      const contact = await api(`/v1/contacts/${encodeURIComponent(entry.contact_id)}`);
      fill(details,
        h("blockquote", {class: "message"}, contact.subject ? h("strong", {}, contact.subject, " ") : null, contact.text || "(no text)"),
        h("h3", {}, "Routing decision"), decisionFacts(contact.routing),
        h("h3", {}, "Trace"), traceList(contact.routing && contact.routing.trace));
    } catch (error) {
      fill(details, errorBox(error, "Could not load the contact"));
    }
  });
  const card = h("article", {class: "card", dataset: {contact: entry.contact_id}},
    h("h2", {}, h("span", {class: "badge"}, entry.channel), " ", entry.reason),
    facts([["Parked", when(entry.parked_at)], ["Contact", entry.contact_id],
      ["Customer", h("a", {href: `#/customers/${encodeURIComponent(entry.customer_id)}`}, entry.customer_id)],
      ["Case", entry.case_id]]),
    toggle, details);
  card.append(resolveForm(entry, card));
  return card;
}

function resolveForm(entry, card) {
  const queue = h("input", {name: "queue", placeholder: "keep the rules' queue"});
  const priority = h("select", {name: "priority"}, h("option", {value: ""}, "keep the rules' priority"),
    PRIORITIES.map((p) => h("option", {value: p}, p)));
  const skills = h("input", {name: "skills", placeholder: "german:3, network:2"});
  const destinations = h("input", {name: "destinations", placeholder: "keep the rules' destinations"});
  const note = h("input", {name: "note", maxlength: "500", placeholder: "why (kept in the trace)"});
  const submit = guard(h("button", {type: "submit", class: "primary"}, "Resolve"), "operations");
  const result = h("div", {"aria-live": "polite"});
  const form = h("form", {class: "resolve", "aria-label": `Resolve ${entry.contact_id}`},
    h("div", {class: "row"}, field("Queue", queue), field("Priority", priority), field("Skills", skills, "name:level, comma-separated")),
    h("div", {class: "row"}, field("Destinations", destinations, "comma-separated names"), field("Note", note)),
    submit, result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try {
      body = releaseBody({queue: queue.value, priority: priority.value, skills: skills.value,
        destinations: destinations.value, note: note.value});
    } catch (error) {
      fill(result, errorBox(error));
      return;
    }
    submit.disabled = true;
    fill(result, loading());
    try {
      const contact = await api(`/v1/exceptions/${encodeURIComponent(entry.contact_id)}/resolve`, {method: "POST", body});
      const routing = contact.routing || {};
      card.classList.add("done");
      fill(result, okBox(`Released to queue ${routing.queue} (${routing.priority}), delivering to ${(routing.destinations || []).join(", ") || "no destination"}.`));
      for (const control of form.elements) control.disabled = true;
    } catch (error) {
      fill(result, errorBox(error, "Not resolved"));
      submit.disabled = !session.can("operations");
    }
  });
  return form;
}

/** The resolve body from the form's text: only what the operator filled in. Throws on bad skills. */
export function releaseBody(values) {
  const body = {};
  if (values.queue.trim()) body.queue = values.queue.trim();
  if (values.priority) body.priority = values.priority;
  if (values.skills.trim()) {
    body.skills = {};
    for (const part of values.skills.split(",").map((s) => s.trim()).filter(Boolean)) {
      const pieces = part.split(":").map((s) => s.trim());
      const [name, level] = pieces;
      if (pieces.length !== 2 || !name || !/^[0-9]+$/.test(level)) throw new Error(`skills: "${part}" is not name:level (a whole number)`);
      body.skills[name] = Number(level);
    }
  }
  if (values.destinations.trim()) body.destinations = values.destinations.split(",").map((s) => s.trim()).filter(Boolean);
  if (values.note.trim()) body.note = values.note.trim();
  return body;
}
