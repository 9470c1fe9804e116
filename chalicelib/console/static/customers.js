// Customers: find one by an identifier; its golden record, consent, timeline, cases and merges;
// answer it from a case.

import {api, query} from "./api.js";
import {decisionFacts, emptyBox, errorBox, facts, field, fill, h, jsonBlock, loading, okBox, table, traceList, when} from "./dom.js";
import {pagedList} from "./paging.js";
import {guard, session} from "./session.js";

const CHANNELS = ["sms", "whatsapp", "email", "webchat", "messenger", "instagram", "telegram", "slack", "x"];

export async function renderCustomers(view, {rest, params, navigate}) {
  const identifier = params.get("identifier") || "";
  const input = h("input", {name: "identifier", value: identifier, placeholder: "phone:+4915123456789", required: true});
  const search = h("form", {class: "row filters", role: "search"},
    field("Identifier", input, "kind:value — phone, email, webchat:site/visitor, external…"),
    h("button", {type: "submit", class: "primary"}, "Find"));
  search.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value.trim()) navigate("customers", [], {identifier: input.value.trim()});
  });
  view.append(search);
  if (!session.can("customers:read")) {
    view.append(errorBox({message: "this API key lacks the scope customers:read, which every customer page needs"}));
    return;
  }
  if (rest[0]) return renderCustomer(view, rest[0], navigate);
  if (!identifier) {
    view.append(h("p", {class: "lead"}, "Find a customer by any identifier the hub knows: a phone number, an email address, a chat id."));
    return;
  }
  const result = h("div", {"aria-live": "polite"}, loading());
  view.append(result);
  try {
    const found = await api(`/v1/customers${query({identifier})}`);
    if (!found.data.length) {
      fill(result, emptyBox(`No customer holds ${identifier}.`));
      return;
    }
    navigate("customers", [found.data[0].id]);
  } catch (error) {
    fill(result, errorBox(error, "Could not search"));
  }
}

async function renderCustomer(view, customerId, navigate) {
  const holder = h("div", {}, loading());
  view.append(holder);
  let customer;
  try {
    customer = await api(`/v1/customers/${encodeURIComponent(customerId)}`);
  } catch (error) {
    fill(holder, errorBox(error, "Could not load the customer"));
    return;
  }
  const name = customer.attributes && customer.attributes.name ? customer.attributes.name.value : null;
  const timeline = h("section", {class: "card", "aria-labelledby": "timeline-title"}, h("h2", {id: "timeline-title"}, "Timeline"));
  const cases = h("section", {class: "card", "aria-labelledby": "cases-title"}, h("h2", {id: "cases-title"}, "Cases"));
  fill(holder,
    h("h2", {class: "customer-name"}, name || "Unnamed customer", " ", h("code", {}, customer.id)),
    customer.merged_into ? h("p", {class: "notice"}, "Merged into ",
      h("a", {href: `#/customers/${encodeURIComponent(customer.merged_into)}`}, customer.merged_into), ".") : null,
    h("div", {class: "grid"},
      identityCard(customer), goldenRecordCard(customer), consentCard(customer)),
    cases, timeline, mergesCard(customer, navigate));

  const shownCases = new Set();
  const caseList = h("div", {class: "list"});
  cases.append(caseList);
  const addCase = (id) => {
    if (!id || shownCases.has(id)) return;
    if (shownCases.size === 0) caseList.replaceChildren();
    shownCases.add(id);
    caseList.append(caseCard(id, customer));
  };
  if (customer.open_case) addCase(customer.open_case.id);
  pagedList(timeline, {
    path: `/v1/customers/${encodeURIComponent(customer.id)}/contacts`, label: "timeline entry", labels: "timeline entries",
    emptyText: "No contacts, messages or events yet.",
    renderItems: (items) => {
      for (const item of items) addCase(item.case_id);
      if (shownCases.size === 0) fill(caseList, emptyBox("No case yet."));
      return items.map(timelineEntry);
    },
  });
}

function identityCard(customer) {
  const unverified = new Set(customer.unverified_identifiers || []);
  return h("section", {class: "card"}, h("h3", {}, "Identifiers"),
    (customer.identifiers || []).length ? h("ul", {}, customer.identifiers.map((i) => {
      const text = `${i.kind}:${i.scope ? `${i.scope}/` : ""}${i.value}`;
      return h("li", {}, h("code", {}, text), unverified.has(`${i.kind}:${i.scope ? `${i.scope}/` : ""}${i.value}`) ? h("span", {class: "badge warn"}, "unproved") : null);
    })) : emptyBox("No identifiers (erased?)."),
    h("h3", {}, "Quality flags"),
    (customer.quality_flags || []).length ? h("p", {}, customer.quality_flags.map((flag) => h("span", {class: "badge warn"}, flag))) : emptyBox("None."),
    facts([["Created", when(customer.created_at)], ["Updated", when(customer.updated_at)]]));
}

function goldenRecordCard(customer) {
  const names = Object.keys(customer.attributes || {}).sort();
  const observations = customer.observations || {};
  return h("section", {class: "card"}, h("h3", {}, "Golden record"),
    names.length ? table(["Attribute", "Value", "Source", "Other sources"], names.map((name) => {
      const chosen = customer.attributes[name];
      const others = Object.entries(observations[name] || {}).filter(([source]) => source !== chosen.source)
        .map(([source, seen]) => `${source}: ${display(seen.value)}`).join("; ");
      return [name, display(chosen.value), h("span", {title: chosen.updated_at}, chosen.source), others || "—"];
    })) : emptyBox("No attributes yet."));
}

function consentCard(customer) {
  const rows = [];
  for (const [channel, purposes] of Object.entries(customer.consent || {})) {
    for (const [purpose, entry] of Object.entries(purposes)) {
      rows.push([channel, purpose, h("span", {class: `badge ${entry.state === "opted_out" ? "bad" : ""}`}, entry.state), entry.source, when(entry.at)]);
    }
  }
  const windows = customer.service_windows || [];
  return h("section", {class: "card"}, h("h3", {}, "Consent"),
    rows.length ? table(["Channel", "Purpose", "State", "Source", "Since"], rows) : emptyBox("No consent statements recorded."),
    h("h3", {}, "Service windows"),
    windows.length ? table(["Channel", "Account", "Open", "Closes"], windows.map((w) =>
      [w.channel, `${w.provider}/${w.account}`, w.open ? "open" : "closed", when(w.closes_at)])) : emptyBox("No messaging windows."));
}

function display(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function timelineEntry(item) {
  const kind = item.direction === "event" ? "event" : item.direction;
  const details = h("div", {class: "details"});
  const toggle = h("button", {type: "button", "aria-expanded": "false"}, "Routing and delivery");
  toggle.addEventListener("click", async () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    if (!open) {
      details.replaceChildren();
      return;
    }
    fill(details, loading());
    try {
      const contact = await api(`/v1/contacts/${encodeURIComponent(item.id)}`);
      fill(details, contactDetails(contact));
    } catch (error) {
      fill(details, errorBox(error, "Could not load the contact"));
    }
  });
  return h("article", {class: `entry ${kind}`, dataset: {contact: item.id}},
    h("div", {class: "entry-head"}, h("span", {class: "badge"}, kind), " ", h("span", {class: "badge"}, item.channel), " ",
      when(item.received_at), item.status ? h("span", {class: "badge"}, item.status) : null,
      item.routing && item.routing.queue && kind === "inbound" ? h("span", {class: "sub"}, ` → ${item.routing.queue} (${item.routing.priority})`) : null),
    h("p", {class: "message"}, item.subject ? h("strong", {}, item.subject, " ") : null, item.text || `(${item.content_type || "no text"})`),
    toggle, details);
}

function contactDetails(contact) {
  const parts = [];
  if (contact.direction === "outbound") {
    parts.push(h("h4", {}, "Status history"), (contact.status_history || []).length
      ? table(["When", "Status", "Code", "Reason", "Source"], contact.status_history.map((s) => [when(s.at), s.status, s.code || "—", s.reason || "—", s.source]))
      : emptyBox("No status yet."));
  } else {
    parts.push(h("h4", {}, "Routing decision"), decisionFacts(contact.routing), h("h4", {}, "Trace"), traceList(contact.routing && contact.routing.trace),
      h("a", {href: `#/routing?contact=${encodeURIComponent(contact.id)}`}, "Explain again with the rules in force"));
  }
  parts.push(h("h4", {}, "Delivery log"), (contact.deliveries || []).length
    ? table(["Destination", "Status", "Attempts", "Last error", "Vendor ref", "Updated"], contact.deliveries.map((d) =>
      [d.destination, d.status, String(d.attempts), d.last_error || "—", d.external_ref || "—", when(d.updated_at)]))
    : emptyBox("Delivered nowhere (no destination)."));
  return parts;
}

function caseCard(caseId, customer) {
  const body = h("div", {}, loading());
  const card = h("article", {class: "card case", dataset: {case: caseId}}, h("h3", {}, "Case ", h("code", {}, caseId)), body);
  api(`/v1/cases/${encodeURIComponent(caseId)}`).then((found) => {
    const refs = Object.values(found.external_refs || {});
    fill(body,
      facts([["Status", found.status], ["Queue", found.queue], ["Priority", found.priority], ["Opened", when(found.opened_at)],
        ["Last activity", when(found.last_activity_at)], ["Contacts", String(found.contact_count)], ["Channels", (found.channels || []).join(", ")],
        ["Closed", found.closed_at ? [when(found.closed_at), found.close_reason ? ` (${found.close_reason})` : ""] : null]]),
      h("h4", {}, "Vendor references"),
      refs.length ? table(["Destination", "Reference", "Vendor state", "Updated"], refs.map((r) =>
        [r.destination, r.ref, r.state ? `${r.state.state}${r.state.vendor_status ? ` (${r.state.vendor_status})` : ""}` : "—", when(r.updated_at)]))
        : emptyBox("No vendor has a ticket for this case."),
      replyForm(caseId, customer));
  }, (error) => fill(body, errorBox(error, "Could not load the case")));
  return card;
}

function replyForm(caseId, customer) {
  const text = h("textarea", {name: "text", rows: "3", required: true});
  const channel = h("select", {name: "channel"}, h("option", {value: "reply"}, "the case's conversation (reply)"),
    h("option", {value: "preferred"}, "the preferred channel"), CHANNELS.map((c) => h("option", {value: c}, c)));
  const submit = guard(h("button", {type: "submit", class: "primary"}, "Send reply"), "messages:send");
  const result = h("div", {"aria-live": "polite"});
  // One idempotency key per message written: a retry after a network error sends it once.
  let idempotencyKey = newKey();
  const form = h("form", {class: "reply", "aria-label": `Reply on case ${caseId}`},
    h("h4", {}, "Reply to the customer"), field("Message", text), field("Channel", channel), submit, result);
  text.addEventListener("input", () => { idempotencyKey = newKey(); });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!text.value.trim()) {
      fill(result, errorBox({message: "write a message first"}));
      return;
    }
    submit.disabled = true;
    fill(result, loading());
    try {
      const sent = await api("/v1/messages", {method: "POST", headers: {"Idempotency-Key": idempotencyKey},
        body: {to: {case_id: caseId}, channel: channel.value, text: text.value}});
      const message = sent.data;
      fill(result, okBox(`Queued on ${message.channel} via ${message.provider} to ${message.to} (${message.id}).`));
      text.value = "";
      idempotencyKey = newKey();
    } catch (error) {
      fill(result, errorBox(error, "Not sent"));
    } finally {
      submit.disabled = !session.can("messages:send");
    }
  });
  return form;
}

/** A random idempotency key (`crypto.randomUUID` exists only on https and localhost). */
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function mergesCard(customer, navigate) {
  const merges = customer.merges || [];
  const result = h("div", {"aria-live": "polite"});
  const card = h("section", {class: "card", "aria-labelledby": "merges-title"}, h("h2", {id: "merges-title"}, "Merge history"), result);
  if (!merges.length) {
    card.append(emptyBox("Never merged."));
    return card;
  }
  card.append(table(["Merge", "Role", "Other customer", "When", "Trigger", "Reverted", ""], merges.map((merge) => {
    const details = h("button", {type: "button"}, "Audit record");
    details.addEventListener("click", async () => {
      fill(result, loading());
      try {
        fill(result, jsonBlock(await api(`/v1/merges/${encodeURIComponent(merge.merge_id)}`)));
      } catch (error) {
        fill(result, errorBox(error, "Could not load the merge"));
      }
    });
    const unmerge = guard(h("button", {type: "button", class: "danger"}, "Unmerge"), "customers:write");
    if (merge.reverted_at) {
      unmerge.disabled = true;
      unmerge.title = "Already reverted";
    }
    unmerge.addEventListener("click", async () => {
      unmerge.disabled = true;
      fill(result, loading());
      try {
        const body = await api(`/v1/customers/${encodeURIComponent(customer.id)}/unmerge`, {method: "POST", body: {merge_id: merge.merge_id}});
        fill(result, okBox(`Merge ${body.merge_id} reverted; the customers are apart again.`));
        setTimeout(() => navigate("customers", [customer.id], {reloaded: Date.now()}), 1200);
      } catch (error) {
        fill(result, errorBox(error, "Not unmerged"));
        unmerge.disabled = !session.can("customers:write");
      }
    });
    return [h("code", {}, merge.merge_id), merge.role,
      h("a", {href: `#/customers/${encodeURIComponent(merge.other_customer_id)}`}, merge.other_customer_id),
      when(merge.merged_at), merge.trigger, merge.reverted_at ? when(merge.reverted_at) : "—", [details, " ", unmerge]];
  })));
  return card;
}
