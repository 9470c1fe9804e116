// Routing: what the rules in force decide for a contact, and why, without storing or sending it.

import {api} from "./api.js";
import {decisionFacts, errorBox, field, fill, h, jsonBlock, loading, traceList} from "./dom.js";
import {guard} from "./session.js";

const EXAMPLE = {contact: {channel: "whatsapp", text: "Dringend: Störung, kein Internet seit gestern"}};

export async function renderRouting(view, {params}) {
  view.append(h("p", {class: "lead"},
    "Paste a contact (or just the fields a rule reads), or load a stored one by id, and see the decision and the trace of the rules in force."));
  const contactId = h("input", {name: "contact-id", placeholder: "ct_…", value: params.get("contact") || ""});
  const load = h("button", {type: "button"}, "Load contact");
  guard(load, "customers:read");
  const source = h("textarea", {name: "body", rows: "12", spellcheck: "false", class: "code"});
  source.value = JSON.stringify(EXAMPLE, null, 2);
  const explain = guard(h("button", {type: "submit", class: "primary"}, "Explain"), "operations");
  const result = h("div", {"aria-live": "polite"});
  const form = h("form", {},
    h("div", {class: "row"}, field("Stored contact", contactId), load),
    field("Request body", source, '{"contact": {...}, "customer": {...}?, "case": {...}?}'), explain);
  view.append(form, result);

  load.addEventListener("click", async () => {
    if (!contactId.value.trim()) {
      fill(result, errorBox({message: "enter a contact id first"}));
      return;
    }
    fill(result, loading());
    try {
      const contact = await api(`/v1/contacts/${encodeURIComponent(contactId.value.trim())}`);
      for (const name of ["deliveries", "raw", "routing", "kind"]) delete contact[name];
      source.value = JSON.stringify({contact}, null, 2);
      fill(result);
    } catch (error) {
      fill(result, errorBox(error, "Could not load the contact"));
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try {
      body = JSON.parse(source.value);
    } catch (error) {
      fill(result, errorBox({message: `the request body is not JSON: ${error.message}`}));
      return;
    }
    fill(result, loading());
    try {
      const explained = await api("/v1/routing/explain", {method: "POST", body});
      fill(result, h("section", {class: "card"}, h("h2", {}, "Decision"), decisionFacts(explained.decision),
        h("h2", {}, "Trace"), traceList(explained.decision && explained.decision.trace),
        h("details", {}, h("summary", {}, "Enrichment"), jsonBlock(explained.enrichment || {}))));
    } catch (error) {
      fill(result, errorBox(error, "Not explained"));
    }
  });
  if (params.get("contact")) load.click();
}
