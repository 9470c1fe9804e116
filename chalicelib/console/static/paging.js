// A list the API pages with `next_cursor`: the first page, then "Load more" until none is left.

import {api, query} from "./api.js";
import {emptyBox, errorBox, h, loading} from "./dom.js";

/**
 * Show `path`'s pages in `container`, each item through `renderItems(items)` (which answers nodes).
 * `emptyText` says what an empty list means; `label` names one item and `labels` several. Answers {reload}.
 */
export function pagedList(container, {path, params = {}, renderItems, emptyText, label, labels}) {
  const body = h("div", {class: "list"});
  const status = h("div", {"aria-live": "polite"});
  const more = h("button", {type: "button", hidden: true}, "Load more");
  let cursor = null;
  let count = 0;

  async function load(first) {
    if (first) {
      cursor = null;
      count = 0;
      body.replaceChildren();
    }
    status.replaceChildren(loading());
    more.hidden = true;
    try {
      const page = await api(`${path}${query({...params, limit: 50, cursor})}`);
      const items = Array.isArray(page.data) ? page.data : [];
      count += items.length;
      body.append(...renderItems(items));
      cursor = page.next_cursor || null;
      more.hidden = !cursor;
      status.replaceChildren(count === 0 ? emptyBox(emptyText) : h("p", {class: "count"}, `${count} ${count === 1 ? label : labels}${cursor ? " so far" : ""}`));
    } catch (error) {
      status.replaceChildren(errorBox(error, `Could not load the ${labels}`));
    }
  }

  more.addEventListener("click", () => load(false));
  container.append(status, body, more);
  load(true);
  return {reload: () => load(true)};
}
