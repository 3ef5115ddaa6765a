// The editor page: pick a language, write code, Run (Ctrl/Cmd+Enter), watch stdout and
// stderr stream in, Stop, type into a running program, read the verdict. See docs/ui.md.

import "./style.css";
import { describe, getJson, postJson } from "./api";
import { tokenIdentity } from "./auth";
import { Editor } from "./editor";
import { samples } from "./languages";
import { RunView, statusLabel, formatMs, type RunResult } from "./output";
import { Session, type ConnState, type HearthEvent, type Reply } from "./session";

interface LanguageInfo {
  id: string;
  name: string;
  version: string;
  aliases?: string[];
  compiled: boolean;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const els = {
  lang: $<HTMLSelectElement>("lang"),
  run: $<HTMLButtonElement>("run"),
  stop: $<HTMLButtonElement>("stop"),
  conn: $("conn"),
  stdin: $<HTMLTextAreaElement>("stdin"),
  interactive: $<HTMLInputElement>("interactive"),
  runState: $("run-state"),
  reconnecting: $("reconnecting"),
  output: $("output"),
  compile: $("compile"),
  compileText: $("compile-text"),
  liveInput: $<HTMLFormElement>("live-input"),
  stdinLine: $<HTMLInputElement>("stdin-line"),
  eof: $<HTMLButtonElement>("eof"),
  note: $("note"),
  verdict: $("verdict"),
  error: $("error"),
};

const isMac = /Mac|iPhone|iPad/.test(navigator.platform);
if (isMac) {
  for (const k of document.querySelectorAll("kbd.mod")) k.textContent = "⌘";
  // CodeMirror's tab-focus toggle is Shift+Alt+M on macOS
  for (const k of document.querySelectorAll("kbd.tabmode")) k.textContent = "⇧⌥";
}

const store = {
  get(k: string): string | null {
    try {
      return localStorage.getItem(k);
    } catch {
      return null;
    }
  },
  set(k: string, v: string): void {
    try {
      localStorage.setItem(k, v);
    } catch {
      // storage full or refused: drafts are a convenience
    }
  },
};

function randomId(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return prefix + Array.from(bytes, (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
}

const identity = tokenIdentity();

/** One session per tab: a reload keeps it (and replays its events); a new tab gets its own.
 *  With a token, the token's session (it reaches no other). */
function sessionId(): string {
  if (identity) return identity.session;
  try {
    const known = sessionStorage.getItem("hearth.session");
    if (known && /^[A-Za-z0-9_-]{1,64}$/.test(known)) return known;
    const id = randomId("web-");
    sessionStorage.setItem("hearth.session", id);
    return id;
  } catch {
    return randomId("web-");
  }
}

const userId = identity?.user ?? store.get("hearth.user") ?? randomId("web-");
if (!identity) store.set("hearth.user", userId);

let lang = "";
let current: RunView | null = null;
let submitting = false;
let stopping = false;
let eofSent = false;
let startedAt = 0;
let tick: number | undefined;

const editor = new Editor({
  parent: $("editor"),
  doc: "",
  label: "Code",
  onRun: () => void run(),
  onStop: () => void stop(),
  onChange: (doc) => {
    if (lang) store.set(`hearth.draft.${lang}`, doc);
  },
});

function showError(message: string | null): void {
  els.error.textContent = message ?? "";
  els.error.hidden = !message;
}

function running(): boolean {
  return current !== null && !current.finished;
}

function updateControls(): void {
  const busy = running();
  els.run.disabled = busy || submitting || !lang;
  els.stop.disabled = !busy || stopping;
  const live = busy && current!.interactive && !eofSent && current!.status === "running";
  if (els.liveInput.hidden === live) {
    els.liveInput.hidden = !live;
    if (live) els.stdinLine.focus();
  }
  document.body.dataset.run = busy ? (current!.status === "queued" ? "queued" : "running") : current ? "done" : "idle";
  renderRunState();
}

function renderRunState(): void {
  if (submitting && !running()) {
    els.runState.textContent = "Sending…";
  } else if (current && running()) {
    const secs = startedAt ? formatMs(performance.now() - startedAt) : "";
    const what = stopping ? "Stopping" : current.status === "queued" ? "Queued" : "Running";
    els.runState.textContent = secs ? `${what} · ${secs}` : what;
  } else if (current?.result) {
    els.runState.textContent = statusLabel(current.result.status);
  } else {
    els.runState.textContent = "";
  }
  els.runState.dataset.state = document.body.dataset.run ?? "idle";
}

/** The view of `runId`, made when a newer run starts; `null` for events of an older run. */
function viewFor(runId: string): RunView | null {
  if (current?.runId === runId) return current;
  // run ids are UUIDv7: a later run sorts after an earlier one
  if (current && runId < current.runId) return null;
  current = new RunView(runId, els);
  stopping = false;
  eofSent = false;
  startedAt = performance.now();
  clearInterval(tick);
  tick = window.setInterval(renderRunState, 100);
  return current;
}

function onEvent(e: HearthEvent): void {
  const view = viewFor(e.run_id);
  if (!view) return;
  view.apply(e);
  if (view.finished) {
    clearInterval(tick);
    stopping = false;
  }
  updateControls();
}

function onState(s: ConnState, d: { attempt: number; code?: number }): void {
  document.body.dataset.conn = s;
  // The close code that started this reconnect (1012: the gateway is restarting), for tests.
  if (d.code !== undefined) document.body.dataset.closeCode = String(d.code);
  els.conn.textContent = s === "open" ? "Connected" : s === "connecting" ? "Connecting…" : `Reconnecting… (try ${d.attempt})`;
  els.reconnecting.hidden = s !== "reconnecting";
}

const session = new Session(sessionId(), {
  event: onEvent,
  state: onState,
  error: (e) => {
    if (e.code === "unauthorized" || e.code === "forbidden") {
      document.body.dataset.conn = "closed";
      els.conn.textContent = "Signed out";
      els.reconnecting.hidden = true;
      showError(`${e.message}. Open a new link (ending in #token=…) to go on.`);
    } else {
      showError(e.message);
    }
  },
});

/** Sends a run: over the socket when it is up, else by POST (its events come on reconnect). */
async function submit(body: Record<string, unknown>): Promise<string> {
  if (session.isOpen()) {
    const reply: Reply = await session.request({ type: "run", ...body });
    if (reply.type === "accepted" && reply.run_id) return reply.run_id;
    throw new Error(reply.error?.message ?? `unexpected reply ${reply.type}`);
  }
  const accepted = await postJson<{ run_id: string }>("v1/runs", body);
  return accepted.run_id;
}

async function run(): Promise<void> {
  if (running() || submitting || !lang) return;
  showError(null);
  submitting = true;
  updateControls();
  const interactive = els.interactive.checked;
  const body: Record<string, unknown> = {
    user_id: userId,
    session_id: session.sessionId,
    lang,
    code: editor.doc,
    stdin: els.stdin.value,
  };
  if (interactive) body.interactive = true;
  try {
    const runId = await submit(body);
    const view = viewFor(runId);
    if (view) view.interactive = interactive;
  } catch (e) {
    showError(`Not run: ${e instanceof Error && !(e instanceof TypeError) ? e.message : describe(e)}`);
  } finally {
    submitting = false;
    updateControls();
  }
}

async function control(frame: Record<string, unknown>): Promise<boolean> {
  try {
    const reply = await session.request(frame);
    if (reply.type === "error") throw new Error(reply.error?.message ?? "refused");
    return true;
  } catch (e) {
    showError(`${frame.type === "kill" ? "Stop" : "Input"} not sent: ${e instanceof Error ? e.message : String(e)}`);
    return false;
  }
}

async function stop(): Promise<void> {
  if (!current || !running() || stopping) return;
  stopping = true;
  updateControls();
  if (!(await control({ type: "kill", run_id: current.runId }))) stopping = false;
  updateControls();
}

els.run.addEventListener("click", () => void run());
els.stop.addEventListener("click", () => void stop());
document.addEventListener("keydown", (e) => {
  if (e.defaultPrevented || e.key !== "Enter" || !(e.ctrlKey || e.metaKey)) return;
  e.preventDefault();
  if (e.shiftKey) void stop();
  else void run();
});

els.liveInput.addEventListener("submit", (e) => {
  e.preventDefault();
  if (!current || !running()) return;
  const data = els.stdinLine.value + "\n";
  const view = current;
  els.stdinLine.value = "";
  void control({ type: "stdin", run_id: view.runId, data }).then((ok) => ok && view.echoInput(data));
});
const sendEof = () => {
  if (!current || !running() || eofSent) return;
  const view = current;
  eofSent = true;
  updateControls();
  void control({ type: "stdin", run_id: view.runId, eof: true }).then((ok) => {
    if (!ok) eofSent = false;
    updateControls();
  });
};
els.eof.addEventListener("click", sendEof);
els.stdinLine.addEventListener("keydown", (e) => {
  if (e.key === "d" && e.ctrlKey && !els.stdinLine.value) {
    e.preventDefault();
    sendEof();
  }
});

els.stdin.value = store.get("hearth.stdin") ?? "";
els.stdin.addEventListener("input", () => store.set("hearth.stdin", els.stdin.value));
els.interactive.checked = store.get("hearth.interactive") === "1";
els.interactive.addEventListener("change", () => store.set("hearth.interactive", els.interactive.checked ? "1" : "0"));

function selectLanguage(id: string): void {
  lang = id;
  els.lang.value = id;
  store.set("hearth.lang", id);
  editor.setDoc(store.get(`hearth.draft.${id}`) ?? samples[id] ?? "");
  void editor.setLanguage(id);
  updateControls();
}

els.lang.addEventListener("change", () => selectLanguage(els.lang.value));

async function loadLanguages(): Promise<void> {
  let list: LanguageInfo[] = [];
  try {
    list = await getJson<LanguageInfo[]>("v1/languages");
  } catch (e) {
    showError(`Languages not loaded: ${describe(e)}. Retrying…`);
  }
  if (list.length === 0) {
    if (!els.error.textContent) showError("No executor is online yet, so no language is offered. Retrying…");
    window.setTimeout(loadLanguages, 2000);
    return;
  }
  showError(null);
  els.lang.replaceChildren(
    ...list.map((l) => {
      const o = document.createElement("option");
      o.value = l.id;
      o.textContent = `${l.name} ${l.version}`;
      return o;
    }),
  );
  els.lang.disabled = false;
  const stored = store.get("hearth.lang");
  const pick = [stored, "python"].find((id) => id && list.some((l) => l.id === id)) ?? list[0].id;
  selectLanguage(pick);
}

window.addEventListener("online", () => session.retryNow());
window.addEventListener("offline", () => session.drop());

// Test hooks (read-only views for the end-to-end tests; nothing here changes behaviour).
(window as unknown as { hearth: unknown }).hearth = {
  session,
  current: () => current,
  result: (): RunResult | null => current?.result ?? null,
  editorText: () => editor.doc,
  grammar: () => editor.applied,
};

session.connect();
void loadLanguages();
updateControls();
editor.focus();
