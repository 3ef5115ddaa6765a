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
