// The hub's /v1 API with the pasted key. Every failure becomes an ApiError with the message to
// show: the hub's own (`error.message` of its one error shape), or what went wrong on the way.

import {session} from "./session.js";

export class ApiError extends Error {
  constructor(message, {code = null, status = null, detail = null} = {}) {
    super(message);
    this.code = code;
    this.status = status;
    this.detail = detail;
  }
}

/** `/v1/...` relative to the console's own address, so a stage prefix (`/api/console/`) works. */
export function apiUrl(path) {
  return new URL(`..${path}`, document.baseURI).toString();
}

/** Call the API; answers the parsed JSON body, or throws ApiError. `key` overrides the session's. */
export async function api(path, {method = "GET", body, key, headers = {}} = {}) {
  const token = key ?? session.key();
  const init = {method, headers: {Accept: "application/json", ...headers}, cache: "no-store"};
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiUrl(path), init);
  } catch (error) {
    throw new ApiError(`the hub could not be reached (${error.message || "network error"}); check the connection and try again`,
      {code: "network_error"});
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      throw new ApiError(`the hub answered HTTP ${response.status} with a body that is not JSON`,
        {code: "unreadable_response", status: response.status});
    }
  }
  if (!response.ok) {
    const error = data && typeof data === "object" && data.error;
    const failure = error && typeof error.message === "string"
      ? new ApiError(error.message, {code: error.code || null, status: response.status, detail: error.detail || null})
      : new ApiError(`the hub answered HTTP ${response.status}`, {code: "http_error", status: response.status});
    // The session's key stopped working (revoked, rotated): the shell asks for a new one.
    if (response.status === 401 && key === undefined) window.dispatchEvent(new CustomEvent("hub-unauthorized", {detail: failure}));
    throw failure;
  }
  return data;
}

/** A query string from the non-empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
