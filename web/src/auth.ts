// The one place that knows how this page proves who it is to hearth (docs/ui.md, "Auth").
//
// Outside dev mode a hearth gateway wants a session token. It is handed to the browser in
// the page URL's fragment, `#token=...` (a fragment never reaches a server log or a
// Referer), kept in this tab's sessionStorage so /status and reloads have it, and then
// taken out of the address bar. HTTP requests carry it as `Authorization: Bearer`, the
// WebSocket (which cannot set headers) as `token=` in its URL's query.

const KEY = "hearth.token";

function readToken(): string | null {
  const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (match) {
    const token = decodeURIComponent(match[1]);
    try {
      sessionStorage.setItem(KEY, token);
    } catch {
      // storage refused (private mode): the token lives for this page only
    }
    history.replaceState(null, "", location.pathname + location.search);
    return token || null;
  }
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

const token = readToken();

/** Headers that authenticate an HTTP request. */
export function authHeaders(): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** `url` with the token in its query (for the WebSocket). */
export function withToken(url: URL): URL {
  if (token) url.searchParams.set("token", token);
  return url;
}

/** True when this page was given a token. */
export function hasToken(): boolean {
  return token !== null;
}

/** The user and session a token names (`hs1.<base64url JSON {u, s, ...}>.<signature>`):
 *  a token reaches only its own session, so the page must use that one. Read, not
 *  verified: the gateway verifies. `null` without a token or for one of another shape. */
export function tokenIdentity(): { user: string; session: string } | null {
  const payload = token?.split(".")[1];
  if (!payload) return null;
  try {
    const b64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)));
    return typeof claims.u === "string" && typeof claims.s === "string" ? { user: claims.u, session: claims.s } : null;
  } catch {
    return null;
  }
}
