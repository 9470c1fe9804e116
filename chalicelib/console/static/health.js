// Health: queue depths, open circuits, the rules in force, and what waits for a person.

import {api} from "./api.js";
import {emptyBox, errorBox, facts, fill, h, loading, table} from "./dom.js";

export async function renderHealth(view) {
  const refresh = h("button", {type: "button"}, "Refresh");
  const body = h("div", {"aria-live": "polite"});
  view.append(refresh, body);
  async function load() {
    fill(body, loading());
    let status;
    try {
      status = await api("/v1/status");
    } catch (error) {
      fill(body, errorBox(error, "Could not read the status"));
      return;
    }
    const unknown = (part) => part.error ? h("span", {class: "badge bad"}, part.error) : "—";
    const count = (part) => part.count === null ? unknown(part) : `${part.count}${part.more ? "+" : ""}`;
    const circuits = status.circuits;
    fill(body,
      h("div", {class: "grid"},
        h("section", {class: "card"}, h("h2", {}, "Hub"), facts([["Runtime", status.runtime], ["Stage", status.stage],
          ["Parked contacts", h("a", {href: "#/exceptions"}, count(status.exceptions))],
          ["Dead letters", h("a", {href: "#/dead-letters"}, count(status.dead_letters))]])),
        h("section", {class: "card"}, h("h2", {}, "Rules in force"), facts([
          ["Routing", status.rules.routing.version ?? unknown(status.rules.routing)], ["from", status.rules.routing.source],
          ["Events", status.rules.events.version ?? unknown(status.rules.events)], ["from", status.rules.events.source]]))),
      h("section", {class: "card"}, h("h2", {}, "Queues"),
        table(["Queue", "Messages waiting or in flight"], status.queues.map((q) => [q.name,
          q.depth === null ? (q.error ? unknown(q) : "not measured by this queue") : h("span", {class: q.depth > 0 && q.name.includes("dead") ? "badge bad" : ""}, String(q.depth))]))),
      h("section", {class: "card"}, h("h2", {}, "Circuits"),
        !circuits.observed ? emptyBox(circuits.error || circuits.note || "Not observed in this process.")
          : circuits.open.length ? table(["Destination", "Open for"], circuits.open.map((c) => [c.destination, `${c.open_for_seconds} s`]))
            : emptyBox("Every circuit is closed: each destination takes deliveries.")));
  }
  refresh.addEventListener("click", load);
  await load();
}
