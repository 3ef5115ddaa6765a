// One WebSocket per page, for one session (README "WebSocket"). It reconnects by itself
// after any close it did not ask for (a dropped connection, a gateway restarting with 1012
// or going away with 1001), with `since=<last seq seen>`, so the events missed meanwhile
// arrive then, in order; an event whose seq was already seen is dropped, so none is shown
// twice. Client frames are answered in order, one reply each (`accepted`, `sent` or
// `error`); a frame whose socket drops before its reply is rejected.

import { withToken } from "./auth";
import { apiUrl } from "./api";

/** A session event as the gateway sends it. */
export interface HearthEvent {
  seq: number;
  session_id: string;
  run_id: string;
  type: "status" | "output" | "result" | string;
  status?: string;
  stream?: "stdout" | "stderr";
  output?: string;
  output_b64?: string;
  [key: string]: unknown;
}

/** A reply to a client frame. */
export interface Reply {
  type: "accepted" | "sent" | "error" | string;
  run_id?: string;
  error?: { code: string; message: string };
  [key: string]: unknown;
}

export type ConnState = "connecting" | "open" | "reconnecting";

export interface SessionHandlers {
  event(e: HearthEvent): void;
  state(s: ConnState, detail: { attempt: number; code?: number }): void;
  /** An error the gateway sent unasked (e.g. the token expired, just before it closes). */
  error(e: { code: string; message: string }): void;
}

/** Error codes after which reconnecting cannot help: the page needs a new token. */
const FINAL = new Set(["unauthorized", "forbidden"]);

/** Delay before reconnect attempt `n` (1, 2, ...): 0.25 s doubling to 4 s, with jitter. */
export function backoffMs(n: number): number {
  const base = Math.min(4000, 250 * 2 ** Math.max(0, n - 1));
  return base / 2 + Math.random() * (base / 2);
}

interface Pending {
  resolve(r: Reply): void;
  reject(e: Error): void;
}

export class Session {
  /** The highest seq seen; `since=` of the next connection. */
  lastSeq: number | null = null;
  private ws: WebSocket | null = null;
  private pending: Pending[] = [];
  private attempt = 0;
  private timer: number | undefined;
  private closed = false;
  state: ConnState = "connecting";

  constructor(
    readonly sessionId: string,
    private readonly on: SessionHandlers,
  ) {}

  /** The socket's URL: the session, the resume point, and the token when there is one. */
  url(): string {
    const url = apiUrl("v1/ws");
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("session_id", this.sessionId);
    if (this.lastSeq !== null) url.searchParams.set("since", String(this.lastSeq));
    return withToken(url).toString();
  }

  connect(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    const ws = new WebSocket(this.url());
    this.ws = ws;
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.attempt = 0;
      this.setState("open");
    };
    ws.onmessage = (m) => {
      if (ws !== this.ws || typeof m.data !== "string") return;
      let frame: Record<string, unknown>;
      try {
        frame = JSON.parse(m.data);
      } catch {
        return;
      }
      if (typeof frame.seq === "number") {
        this.receive(frame as HearthEvent);
      } else if (this.pending.length > 0) {
        this.pending.shift()!.resolve(frame as Reply);
      } else if (frame.type === "error") {
        const error = (frame as Reply).error ?? { code: "unknown", message: "error" };
        if (FINAL.has(error.code)) this.close();
        this.on.error(error);
      }
    };
    ws.onclose = (c) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.failPending("the connection dropped before hearth answered");
      if (this.closed) return;
      this.attempt += 1;
      this.setState("reconnecting", c.code);
      this.timer = window.setTimeout(() => this.connect(), backoffMs(this.attempt));
    };
  }

  private receive(e: HearthEvent): void {
    if (this.lastSeq !== null && e.seq <= this.lastSeq) return;
    this.lastSeq = e.seq;
    this.on.event(e);
  }

  private setState(s: ConnState, code?: number): void {
    this.state = s;
    this.on.state(s, { attempt: this.attempt, code });
  }

  private failPending(why: string): void {
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) p.reject(new Error(why));
  }

  /** True while frames can be sent. */
  isOpen(): boolean {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Sends a client frame and waits for its reply. */
  request(frame: Record<string, unknown>): Promise<Reply> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("not connected"));
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      ws.send(JSON.stringify(frame));
    });
  }

  /** Drops the socket and reconnects as after any drop (the browser says it went offline:
   *  a connection that silently died would otherwise look open for minutes). */
  drop(): void {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(4000, "browser offline");
  }

  /** Reconnects now instead of at the end of the back-off (the browser went online). */
  retryNow(): void {
    if (!this.closed && this.ws === null) this.connect();
  }

  /** Closes for good (the page is going away). */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.ws?.close(1000, "page closed");
    this.ws = null;
  }
}
