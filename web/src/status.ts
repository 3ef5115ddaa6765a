// The status page: GET v1/status once a second, drawn as tiles and a table of executors.

import "./style.css";
import { describe, getJson } from "./api";

interface Queue {
  depth: number;
  waiting: number;
  running: number;
}

interface ExecutorStatus {
  id: string;
  driver: string;
  slots: number;
  busy: number;
  warm: number;
  ready: number;
  runs_done: number;
  languages: number;
  seen_ms_ago: number;
}

interface Status {
  nats_connected: boolean;
  executors_online: number;
  slots: number;
  busy: number;
  warm_ready: number;
  warm_target: number;
  queue: Queue | null;
  latency: { count: number; p50_ms: number | null; p99_ms: number | null; window_s: number };
  ws_connections: number;
  executors: ExecutorStatus[];
}

const EVERY_MS = 1000;

function set(key: string, text: string): void {
  for (const el of document.querySelectorAll<HTMLElement>(`[data-k="${key}"]`)) el.textContent = text;
}

const ms = (v: number | null) => (v === null ? "–" : v < 1000 ? `${Math.round(v)} ms` : `${(v / 1000).toFixed(2)} s`);

function render(s: Status): void {
  set("executors_online", String(s.executors_online));
  set("nats", s.nats_connected ? "NATS connected" : "NATS disconnected");
  set("busy", String(s.busy));
  set("slots", `of ${s.slots} slot${s.slots === 1 ? "" : "s"}`);
  set("warm_ready", String(s.warm_ready));
  set("warm_target", `ready now · ${s.warm_target} plain kept warm, plus prepared interpreters`);
  set("queue_waiting", s.queue ? String(s.queue.waiting) : "?");
  set("queue", s.queue ? `waiting · ${s.queue.running} handed out · ${s.queue.depth} in the stream` : "NATS did not answer");
  set("p50", ms(s.latency.p50_ms));
  set("p99", ms(s.latency.p99_ms));
  set("latency", `over ${s.latency.count} run${s.latency.count === 1 ? "" : "s"}`);
  set("window", `last ${Math.round(s.latency.window_s / 60)} min, accepted → verdict`);
  document.getElementById("t-executors")!.dataset.alert = s.executors_online === 0 || !s.nats_connected ? "true" : "false";
  const rows = s.executors.map((e) => {
    const tr = document.createElement("tr");
    const cells = [e.id, e.driver, `${e.busy} / ${e.slots}`, `${e.ready} / ${e.warm}`, String(e.runs_done), String(e.languages), `${(e.seen_ms_ago / 1000).toFixed(1)} s ago`];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.append(td);
    }
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 7;
    td.textContent = "No executor online.";
    tr.append(td);
    rows.push(tr);
  }
  document.querySelector("#executors tbody")!.replaceChildren(...rows);
}

async function refresh(): Promise<void> {
  const conn = document.getElementById("conn")!;
  try {
    render(await getJson<Status>("v1/status"));
    document.body.dataset.conn = "open";
    conn.textContent = "Live";
    document.getElementById("updated")!.textContent = `Updated ${new Date().toLocaleTimeString()}, every second.`;
  } catch (e) {
    document.body.dataset.conn = "reconnecting";
    conn.textContent = `Unreachable: ${describe(e)}; retrying…`;
  }
  window.setTimeout(refresh, EVERY_MS);
}

void refresh();
