// HTTP calls to the gateway, relative to the page (so hearth can sit under a path prefix).

import { authHeaders } from "./auth";

/** An error answer of the API: `{"error":{"code","message"}}` plus the HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The absolute URL of an API path such as `v1/languages`. */
export function apiUrl(path: string): URL {
  return new URL(path, document.baseURI);
}

/** Fetches JSON; throws `ApiError` for an error answer, `TypeError` when unreachable. */
export async function getJson<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(apiUrl(path), {
    ...init,
    headers: { ...authHeaders(), ...(init.headers as Record<string, string> | undefined) },
    cache: "no-store",
  });
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: reported below
  }
  if (!response.ok) {
    const e = (body as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiError(response.status, e?.code ?? `http_${response.status}`, e?.message ?? (text.slice(0, 200) || response.statusText));
  }
  return body as T;
}

/** Posts JSON and reads the JSON answer. */
export function postJson<T>(path: string, value: unknown): Promise<T> {
  return getJson<T>(path, { method: "POST", body: JSON.stringify(value), headers: { "content-type": "application/json" } });
}

/** What a person should read about a failed call. */
export function describe(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 401 || e.status === 403)
      return `${e.message} (this hearth needs a session token: open the link you were given, ending in #token=…)`;
    return e.message;
  }
  if (e instanceof TypeError) return "hearth is unreachable";
  return String(e);
}
