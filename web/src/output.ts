// One run on the page: its output as it streams (stdout plain, stderr set apart, input the
// person sent echoed), then the verdict. The final result carries the whole stdout and
// stderr: when what streamed in differs from it (events that expired before a reconnect),
// the output is rebuilt from the result and the page says so.

import type { HearthEvent } from "./session";

/** The final result of a run (README "The API"). */
export interface RunResult {
  run_id: string;
  status: string;
  exit_code?: number | null;
  signal?: number | null;
  stdout?: string;
  stderr?: string;
  stdout_b64?: string | null;
  stderr_b64?: string | null;
  compile_output?: string;
  wall_ms?: number | null;
  cpu_ms?: number | null;
  memory_kb?: number | null;
  truncated?: boolean;
  message?: string | null;
}

/** Characters of output shown at most; the rest is counted, not drawn. */
const SHOW_MAX = 4 << 20;

const LABELS: Record<string, string> = {
  ok: "OK",
  runtime_error: "Runtime error",
  signaled: "Killed by a signal",
  compile_error: "Compile error",
  timeout: "Time limit exceeded",
  cpu_limit: "CPU limit exceeded",
  memory_limit: "Memory limit exceeded",
  output_limit: "Output limit reached",
  sandbox_error: "Sandbox error",
  internal_error: "Internal error",
  cancelled: "Stopped",
};

const SIGNALS: Record<number, string> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  4: "SIGILL",
  5: "SIGTRAP",
  6: "SIGABRT",
  7: "SIGBUS",
  8: "SIGFPE",
  9: "SIGKILL",
  11: "SIGSEGV",
  13: "SIGPIPE",
  14: "SIGALRM",
  15: "SIGTERM",
  24: "SIGXCPU",
  25: "SIGXFSZ",
  31: "SIGSYS",
};

/** A human label for a status. */
export function statusLabel(status: string): string {
  return LABELS[status] ?? status;
}

/** `8.4 MB`, `512 KB`. */
export function formatMemory(kb: number): string {
  if (kb < 1024) return `${kb} KB`;
  const mb = kb / 1024;
  return `${mb < 10 ? mb.toFixed(1) : Math.round(mb)} MB`;
}

/** `12 ms`, `1.24 s`. */
export function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

function decodeB64(b64: string): Uint8Array {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

export interface RunElements {
  output: HTMLElement;
  compile: HTMLElement;
  compileText: HTMLElement;
  verdict: HTMLElement;
  note: HTMLElement;
}

export class RunView {
  status = "queued";
  result: RunResult | null = null;
  interactive = false;
  private text = { stdout: "", stderr: "" };
  private decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
  private shown = 0;
  private lastSpan: HTMLSpanElement | null = null;
  private lastKind = "";

  constructor(
    readonly runId: string,
    private readonly el: RunElements,
  ) {
    el.output.replaceChildren();
    el.output.dataset.runId = runId;
    delete el.output.dataset.reassembled;
    el.compile.hidden = true;
    el.compileText.textContent = "";
    el.verdict.replaceChildren();
    el.verdict.hidden = true;
    el.verdict.removeAttribute("data-status");
    el.note.textContent = "";
  }

  get finished(): boolean {
    return this.result !== null;
  }

  /** An event of this run. */
  apply(e: HearthEvent): void {
    if (this.finished) return;
    if (e.type === "status" && e.status) {
      this.status = e.status;
    } else if (e.type === "output" && (e.stream === "stdout" || e.stream === "stderr")) {
      const chunk =
        typeof e.output === "string"
          ? e.output
          : typeof e.output_b64 === "string"
            ? this.decoders[e.stream].decode(decodeB64(e.output_b64), { stream: true })
            : "";
      this.text[e.stream] += chunk;
      this.append(e.stream, chunk);
    } else if (e.type === "result") {
      this.finish(e as unknown as RunResult);
    }
  }

  /** Echoes input the person sent to the program. */
  echoInput(text: string): void {
    this.append("stdin", text);
  }

  private append(kind: string, chunk: string): void {
    if (!chunk) return;
    const out = this.el.output;
    const atBottom = out.scrollHeight - out.scrollTop - out.clientHeight < 24;
    if (this.shown >= SHOW_MAX) return;
    const room = SHOW_MAX - this.shown;
    const piece = chunk.length > room ? chunk.slice(0, room) : chunk;
    this.shown += piece.length;
    if (this.lastSpan && this.lastKind === kind) {
      this.lastSpan.append(piece);
    } else {
      const span = document.createElement("span");
      span.className = `out-${kind}`;
      span.textContent = piece;
      out.append(span);
      this.lastSpan = span;
      this.lastKind = kind;
    }
    if (this.shown >= SHOW_MAX) {
      this.el.note.textContent = "Output shown up to 4 MiB; the API has all of it (GET /v1/runs/" + this.runId + ").";
    }
    if (atBottom) out.scrollTop = out.scrollHeight;
  }

  private finish(r: RunResult): void {
    this.result = r;
    this.status = r.status;
    const bytesTwins = r.stdout_b64 || r.stderr_b64;
    const differs = (r.stdout ?? "") !== this.text.stdout || (r.stderr ?? "") !== this.text.stderr;
    if (!bytesTwins && differs && this.shown < SHOW_MAX) {
      // Some output did not stream in: show the whole of it from the result.
      this.el.output.replaceChildren();
      this.lastSpan = null;
      this.lastKind = "";
      this.shown = 0;
      this.append("stdout", r.stdout ?? "");
      this.append("stderr", r.stderr ?? "");
      this.el.output.dataset.reassembled = "true";
      this.el.note.textContent = "Part of the output was not streamed to this page; it is shown from the final result (stdout, then stderr).";
    }
    if (r.compile_output) {
      this.el.compileText.textContent = r.compile_output;
      this.el.compile.hidden = false;
    }
    this.renderVerdict(r);
  }

  private renderVerdict(r: RunResult): void {
    const v = this.el.verdict;
    v.dataset.status = r.status;
    const badge = document.createElement("strong");
    badge.className = "badge";
    badge.textContent = statusLabel(r.status);
    const facts: [string, string][] = [];
    if (r.signal != null) facts.push(["signal", `${r.signal}${SIGNALS[r.signal] ? ` (${SIGNALS[r.signal]})` : ""}`]);
    else if (r.exit_code != null) facts.push(["exit code", String(r.exit_code)]);
    if (r.wall_ms != null) facts.push(["wall", formatMs(r.wall_ms)]);
    if (r.cpu_ms != null) facts.push(["CPU", formatMs(r.cpu_ms)]);
    if (r.memory_kb != null) facts.push(["peak memory", formatMemory(r.memory_kb)]);
    facts.push(["output", r.truncated ? "truncated at the limit" : "complete"]);
    const list = document.createElement("dl");
    for (const [k, value] of facts) {
      const item = document.createElement("div");
      item.dataset.fact = k;
      if (k === "output" && r.truncated) item.className = "warn";
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = value;
      item.append(dt, dd);
      list.append(item);
    }
    v.replaceChildren(badge, list);
    if (r.message) {
      const p = document.createElement("p");
      p.className = "message";
      p.textContent = r.message;
      v.append(p);
    }
    v.hidden = false;
  }
}
