// The pasted API key (sessionStorage: gone when the tab closes) and what it may do.

const KEY = "hub-console-key";
const IDENTITY = "hub-console-identity";

export const session = {
  key() {
    return sessionStorage.getItem(KEY);
  },
  identity() {
    try {
      return JSON.parse(sessionStorage.getItem(IDENTITY) || "null");
    } catch {
      return null;
    }
  },
  start(key, identity) {
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(IDENTITY, JSON.stringify(identity));
  },
  end() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(IDENTITY);
  },
  can(scope) {
    const identity = this.identity();
    return Boolean(identity && Array.isArray(identity.scopes) && identity.scopes.includes(scope));
  },
};

/** Disable a control the key cannot use, with a tooltip naming the scope it needs. */
export function guard(control, scope) {
  if (!session.can(scope)) {
    control.disabled = true;
    control.title = `This API key lacks the scope ${scope}`;
    control.dataset.missingScope = scope;
  }
  return control;
}
