// Dead letters: deliveries and sends the hub gave up on, with the vendor's reason; replay them.

import {api, query} from "./api.js";
import {emptyBox, errorBox, field, fill, h, loading, okBox, when} from "./dom.js";
import {guard, session} from "./session.js";

const KINDS = ["contact", "customer_event", "message"];

export async function renderDeadLetters(view, {params, navigate}) {
  const destination = params.get("destination") || "";
  const kind = params.get("kind") || "";
  view.append(h("p", {class: "lead"},
    "What the hub gave up delivering or sending, with the vendor's answer. A replay queues it again with the same id, so the vendor never gets it twice."));

  const destinationInput = h("input", {name: "destination", value: destination, placeholder: "every destination"});
  const kindSelect = h("select", {name: "kind"}, h("option", {value: ""}, "every kind"),
    KINDS.map((k) => h("option", {value: k, selected: k === kind}, k)));
  const filter = h("form", {class: "row filters", role: "search"},
    field("Destination", destinationInput), field("Kind", kindSelect), h("button", {type: "submit"}, "Filter"));
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate("dead-letters", [], Object.fromEntries(Object.entries({
      destination: destinationInput.value.trim(), kind: kindSelect.value}).filter(([, v]) => v)));
  });

  const result = h("div", {"aria-live": "polite"});
  const list = h("div", {class: "list"});
  const replaySelected = guard(h("button", {type: "button", disabled: true}, "Replay selected"), "operations");
  const replayAll = guard(h("button", {type: "button"}, destination ? `Replay all of ${destination}` : "Replay all of a destination"), "operations");
  if (!destination && !replayAll.disabled) {
    replayAll.disabled = true;
    replayAll.title = "Filter by a destination first";
  }
  const confirmRow = h("div", {class: "confirm", hidden: true});
  view.append(filter, h("div", {class: "row actions"}, replaySelected, replayAll), confirmRow, result, list);

  const selected = new Set();
  function selectionChanged() {
    replaySelected.disabled = selected.size === 0 || !session.can("operations");
    replaySelected.textContent = selected.size ? `Replay selected (${selected.size})` : "Replay selected";
  }

  async function load() {
    selected.clear();
    selectionChanged();
    fill(list, loading());
    try {
      const letters = [];
      let cursor = null;
      let calls = 0;
      do {  // a few pages at most: dead letters are the exception (a kind's page may hold fewer)
        const page = await api(`/v1/dead-letters${query({destination, kind, limit: 100, cursor})}`);
        letters.push(...page.data);
        cursor = page.next_cursor;
        calls += 1;
      } while (cursor && letters.length < 500 && calls < 20);
      if (letters.length === 0) {
        fill(list, emptyBox(cursor ? "None of the dead letters read so far match this filter, and more are left: narrow it by destination."
          : destination || kind ? "No dead letters match this filter." : "No dead letters: every delivery got through or is still being tried."));
        return;
      }
      fill(list, h("table", {},
        h("caption", {}, `${letters.length} dead letter${letters.length === 1 ? "" : "s"}${cursor ? ` (the first ${letters.length}; more are left)` : ""}`),
        h("thead", {}, h("tr", {}, ["", "Destination", "Kind", "Reason", "Attempts", "Died", ""].map((t) => h("th", {scope: "col"}, t)))),
        h("tbody", {}, letters.map(row))));
    } catch (error) {
      fill(list, errorBox(error, "Could not load the dead letters"));
    }
  }

  function row(letter) {
    const box = guard(h("input", {type: "checkbox", "aria-label": `Select ${letter.id}`}), "operations");
    box.addEventListener("change", () => {
      if (box.checked) selected.add(letter.id);
      else selected.delete(letter.id);
      selectionChanged();
    });
    const replay = guard(h("button", {type: "button"}, "Replay"), "operations");
    replay.addEventListener("click", () => replayIds([letter.id]));
    return h("tr", {dataset: {letter: letter.id}},
      h("td", {}, box), h("td", {}, letter.destination), h("td", {}, letter.kind),
      h("td", {class: "reason"}, letter.reason, h("div", {class: "sub"}, letter.subject_id)),
      h("td", {}, String(letter.attempts)), h("td", {}, when(letter.dead_at)), h("td", {}, replay));
  }

  async function replayIds(ids) {
    fill(result, loading());
    const failures = [];
    let done = 0;
    for (const id of ids) {
      try {
        await api(`/v1/dead-letters/${encodeURIComponent(id)}/replay`, {method: "POST"});
        done += 1;
      } catch (error) {
        failures.push([id, error]);
      }
    }
    fill(result, done ? okBox(`Queued ${done} dead letter${done === 1 ? "" : "s"} again.`) : null,
      failures.map(([id, error]) => errorBox(error, `Not replayed: ${id}`)));
    await load();
  }

  replaySelected.addEventListener("click", () => replayIds([...selected]));
  replayAll.addEventListener("click", () => {
    const yes = h("button", {type: "button", class: "danger"}, `Yes, replay every dead letter of ${destination}`);
    const no = h("button", {type: "button"}, "Cancel");
    fill(confirmRow, h("p", {}, `Replay every dead letter of ${destination}, not only those shown?`), yes, no);
    confirmRow.hidden = false;
    yes.focus();
    no.addEventListener("click", () => { confirmRow.hidden = true; replayAll.focus(); });
    yes.addEventListener("click", async () => {
      confirmRow.hidden = true;
      // The hub replays a bounded batch per call and says whether any are left.
      let queued = 0;
      try {
        let more = true;
        while (more) {
          fill(result, loading(`Queued ${queued} so far…`));
          const batch = await api("/v1/dead-letters/replay", {method: "POST", body: {destination}});
          queued += batch.queued;
          more = batch.more && batch.queued > 0;
        }
        fill(result, okBox(`Queued ${queued} dead letter${queued === 1 ? "" : "s"} of ${destination} again.`));
      } catch (error) {
        fill(result, queued ? okBox(`Queued ${queued} before the hub refused:`) : null,
          errorBox(error, `Could not replay the dead letters of ${destination}`));
      }
      await load();
    });
  });

  await load();
}
