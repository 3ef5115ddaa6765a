// The real thing for the browser tests: a nats-server with JetStream, `hearth executor` and
// `hearth gateway` (the debug build, separate processes so a test can restart the gateway
// alone), all on free loopback ports; Debian's Chromium driven by playwright-core; and a
// TCP proxy in front of the gateway that a test can cut, to drop the page's WebSocket for
// real (the browser sees the connection die, as on a network drop).

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const webDir = path.resolve(here, "..");
export const repo = path.resolve(webDir, "..");
const target = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(repo, "target");
const HEARTH = process.env.HEARTH_BIN ?? path.join(target, "debug/hearth");
const AGENT = process.env.HEARTH_AGENT ?? path.join(target, "x86_64-unknown-linux-musl/debug/hearth-agent");
const NATS = process.env.HEARTH_NATS_SERVER ?? path.join(repo, ".hearth/tools/bin/nats-server");
const CHROMIUM = process.env.HEARTH_CHROMIUM ?? "/usr/bin/chromium";

/** Screenshots and logs of the tests (gitignored; docs/ui.md). */
export const artifacts = path.join(webDir, "test-results");
mkdirSync(path.join(artifacts, "logs"), { recursive: true });

const children = new Set();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A free loopback port (bound, then released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Polls `check` until it returns a truthy value, within `ms`. */
export async function until(what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    let v;
    try {
      v = await check();
    } catch {
      v = undefined;
    }
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

function start(name, bin, args, env = {}) {
  const log = openSync(path.join(artifacts, "logs", `${name}.log`), "a");
  const child = spawn(bin, args, { stdio: ["ignore", log, log], env: { ...process.env, ...env } });
  children.add(child);
  child.exited = new Promise((r) => child.once("exit", (code, signal) => (children.delete(child), r({ code, signal }))));
  return child;
}

async function stopChild(child, ms = 15000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), ms);
  await child.exited;
  clearTimeout(t);
}

async function listening(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

/** `--dev` when this hearth's gateway has the flag (anonymous callers; loopback only): a
 *  gateway with auth refuses to start without keys or it. */
let devFlag;
async function gatewayDevArgs() {
  if (devFlag === undefined) {
    const { execFileSync } = await import("node:child_process");
    const help = execFileSync(HEARTH, ["gateway", "--help"], { encoding: "utf8" });
    devFlag = /^\s+--dev\b/m.test(help) ? ["--dev"] : [];
  }
  return devFlag;
}

/** nats-server + executor + gateway. `slots` worker slots (and as many warm sandboxes);
 *  `gatewayEnv` for the gateway (with `HEARTH_API_KEYS` it runs with auth, else in dev mode). */
export async function startStack({ slots = 2, gatewayEnv = {} } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "hearth-ui-"));
  const natsPort = await freePort();
  const conf = path.join(dir, "nats.conf");
  writeFileSync(conf, `listen: 127.0.0.1:${natsPort}\nmax_payload: 33554432\njetstream { store_dir: ${JSON.stringify(path.join(dir, "js"))} }\n`);
  const nats = start("nats-server", NATS, ["-c", conf]);
  await until("nats-server to listen", () => listening(natsPort), 10000);
  const natsUrl = `nats://127.0.0.1:${natsPort}`;
  const executor = start("executor", HEARTH, ["executor", "--nats", natsUrl, "--id", "ui-ex1", "--slots", String(slots)], {
    HEARTH_AGENT: AGENT,
  });
  const port = await freePort();
  const stack = {
    port,
    url: `http://127.0.0.1:${port}/`,
    natsUrl,
    gateway: null,
    async startGateway() {
      const args = ["gateway", "--nats", natsUrl, "--listen", `127.0.0.1:${port}`, "--web-dir", path.join(webDir, "dist")];
      const dev = gatewayEnv.HEARTH_API_KEYS ? [] : await gatewayDevArgs();
      this.gateway = start("gateway", HEARTH, [...args, ...dev], gatewayEnv);
      await until("the gateway to be ready", async () => (await fetch(`${this.url}readyz`)).status === 200, 60000);
    },
    async stopGateway() {
      await stopChild(this.gateway);
    },
    async stop() {
      await stopChild(this.gateway);
      await stopChild(executor, 30000);
      await stopChild(nats);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await stack.startGateway();
  } catch (e) {
    await stack.stop();
    throw e;
  }
  return stack;
}

/** A TCP proxy on a free port to `targetPort`, whose connections a test can cut. */
export async function startProxy(targetPort) {
  const open = new Set();
  const requests = [];
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targetPort, "127.0.0.1");
    const pair = { client, upstream };
    open.add(pair);
    let head = "";
    client.on("data", (d) => {
      if (head.length < 2048) {
        head += d.toString("latin1");
        const line = head.split("\r\n", 1)[0];
        if (head.includes("\r\n") && !pair.logged) {
          pair.logged = true;
          requests.push(line);
        }
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      open.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const port = server.address().port;
  return {
    url: `http://127.0.0.1:${port}/`,
    /** Request lines seen (`GET /v1/ws?session_id=..&since=.. HTTP/1.1`, ...). */
    requests,
    /** Cuts every open connection with a TCP reset. */
    dropAll() {
      for (const { client, upstream } of open) {
        client.resetAndDestroy();
        upstream.destroy();
      }
      open.clear();
    },
    /** New connections are reset at once until `resume`. */
    refuse() {
      refusing = true;
    },
    resume() {
      refusing = false;
    },
    close() {
      this.dropAll();
      return new Promise((r) => server.close(r));
    },
  };
}

/** Debian's Chromium, headless, with the flags a closed network and root need. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout: 30000,
  });
}

/** A fresh page (own context: own storage, own session) at `url`, ready to run code. */
export async function openEditor(browser, url, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  page.errors = errors;
  await page.goto(url);
  await page.locator("body[data-conn=open]").waitFor();
  await page.locator("#lang:not([disabled])").waitFor();
  return page;
}

/** Replaces the editor's text by typing `lines` (each line typed, then Enter). */
export async function typeCode(page, lines) {
  await page.locator(".cm-content").click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.press("Delete");
  for (const line of lines) {
    await page.keyboard.type(line);
    await page.keyboard.press("Enter");
    // auto-indent after a line: take it back, each line brings its own
    await page.keyboard.press("Shift+Home");
    await page.keyboard.press("Delete");
  }
}

/** The output pane's text. */
export const outputText = (page) => page.locator("#output").evaluate((el) => el.textContent);

/** Saves a screenshot as test-results/<name>.png. */
export const shot = (page, name) => page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
