// The console's shell: login with an API key, the navigation, and hash routing to the pages.

import {api} from "./api.js";
import {errorBox, field, fill, h} from "./dom.js";
import {session} from "./session.js";
import {renderDeadLetters} from "./dead-letters.js";
import {renderCustomers} from "./customers.js";
import {renderExceptions} from "./exceptions.js";
import {renderHealth} from "./health.js";
import {renderRouting} from "./routing.js";
import {renderUnhandled} from "./unhandled.js";

const PAGES = {
  exceptions: ["Exceptions", renderExceptions],
  "dead-letters": ["Dead letters", renderDeadLetters],
  customers: ["Customers", renderCustomers],
  routing: ["Routing", renderRouting],
  unhandled: ["Unhandled events", renderUnhandled],
  health: ["Health", renderHealth],
};

const main = document.getElementById("main");

/** `#/customers/cus_1?x=y` → {page: "customers", rest: ["cus_1"], params}. */
export function currentRoute() {
  const [path, search = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [page, ...rest] = path.split("/").filter(Boolean).map(decodeSegment);
  return {page: page || "exceptions", rest, params: new URLSearchParams(search)};
}

/** A path segment as typed: a malformed escape (`%E0`) stays as it is, and the page then shows
 * what the hub answers for it, rather than the console stopping on a URIError. */
function decodeSegment(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Go to a route (`navigate("customers", ["cus_1"])`). */
export function navigate(page, rest = [], params = {}) {
  const search = new URLSearchParams(params).toString();
  location.hash = `#/${[page, ...rest].map(encodeURIComponent).join("/")}${search ? `?${search}` : ""}`;
}

function renderLogin(problem) {
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  fill(document.getElementById("who"));
  const input = h("input", {type: "password", name: "key", autocomplete: "off", required: true, spellcheck: "false"});
  const result = h("div", {"aria-live": "polite"}, problem ? errorBox(problem) : null);
  const form = h("form", {class: "card login"},
    h("h1", {}, "Log in"),
    h("p", {}, "Paste an API key of this hub. It stays in this tab (session storage) until you log out or close the tab."),
    field("API key", input),
    h("button", {type: "submit", class: "primary"}, "Log in"),
    result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    fill(result, h("p", {class: "notice loading"}, "Checking the key…"));
    try {
      const identity = await api("/v1/me", {key});
      session.start(key, identity);
      route();
    } catch (error) {
      fill(result, errorBox(error, "The key was not accepted"));
      input.focus();
    }
  });
  fill(main, form);
  input.focus();
}

function showIdentity() {
  const identity = session.identity();
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  fill(document.getElementById("who"), "Key ", h("strong", {}, identity.name), " · ",
    h("span", {class: "scopes"}, identity.scopes.length ? identity.scopes.join(", ") : "no scopes"));
}

let rendering = 0;

async function route() {
  if (!session.key() || !session.identity()) {
    renderLogin();
    return;
  }
  showIdentity();
  const {page, rest, params} = currentRoute();
  const [title, render] = PAGES[page] || PAGES.exceptions;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#/${page}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${title} · Hub console`;
  const ticket = ++rendering;
  const view = h("section", {class: "page", "aria-labelledby": "page-title"},
    h("h1", {id: "page-title", tabindex: "-1"}, title));
  fill(main, view);
  view.querySelector("h1").focus({preventScroll: true});
  try {
    await render(view, {rest, params, navigate, stale: () => ticket !== rendering});
  } catch (error) {
    // A page's own errors are shown where they happen; this is the last line.
    if (ticket === rendering) view.append(errorBox(error));
  }
}

/** A 401 for the session's key means it no longer works: back to the login, saying why. */
window.addEventListener("hub-unauthorized", (event) => {
  session.end();
  rendering += 1;  // whatever page was loading is abandoned
  renderLogin(event.detail);
});

document.getElementById("logout").addEventListener("click", () => {
  session.end();
  history.replaceState(null, "", location.pathname);
  renderLogin();
});
window.addEventListener("hashchange", route);
route();
