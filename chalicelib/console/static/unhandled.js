// Unhandled events: webhook items no adapter could read, kept raw, by UTC day and provider.

import {field, h, jsonBlock, when} from "./dom.js";
import {pagedList} from "./paging.js";

export async function renderUnhandled(view, {params, navigate}) {
  const today = new Date().toISOString().slice(0, 10);
  const day = params.get("day") || today;
  const provider = params.get("provider") || "";
  const dayInput = h("input", {type: "date", name: "day", value: day, required: true});
  const providerInput = h("input", {name: "provider", value: provider, placeholder: "every provider"});
  const filter = h("form", {class: "row filters", role: "search"},
    field("Day (UTC)", dayInput), field("Provider", providerInput), h("button", {type: "submit"}, "Show"));
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate("unhandled", [], Object.fromEntries(Object.entries({day: dayInput.value, provider: providerInput.value.trim()}).filter(([, v]) => v)));
  });
  view.append(h("p", {class: "lead"},
    "Items of verified webhooks that no adapter could read (a new event type, an unknown shape): kept raw so nothing a provider sends is silently lost."), filter);
  pagedList(view, {
    path: "/v1/unhandled-events", params: {day, provider}, label: "unhandled event", labels: "unhandled events",
    emptyText: `Nothing unhandled on ${day}${provider ? ` from ${provider}` : ""}.`,
    renderItems: (items) => items.map((event) => h("article", {class: "card"},
      h("h2", {}, h("span", {class: "badge"}, event.provider), " ", event.reason),
      h("p", {class: "sub"}, when(event.received_at), ` · ${event.id}`, event.truncated ? " · payload truncated" : ""),
      h("details", {}, h("summary", {}, "Raw payload"), jsonBlock(event.raw)))),
  });
}
