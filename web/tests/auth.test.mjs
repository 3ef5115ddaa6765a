// The page outside dev mode: a gateway with an API key; a backend issues a session token
// (POST /v1/sessions) and opens the UI at `#token=...`. The page must carry the token on
// HTTP (Authorization: Bearer) and on the WebSocket (token=), use the token's session, and
// say clearly when it has none.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { launchBrowser, outputText, shot, startStack } from "./harness.mjs";

const KEY = "ui-test-key-0123456789abcdef";
let stack;
let browser;

before(async () => {
  stack = await startStack({ slots: 1, gatewayEnv: { HEARTH_API_KEYS: `ui-test=${KEY}` } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

async function issueToken(session_id) {
  const r = await fetch(`${stack.url}v1/sessions`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ user_id: "ada", session_id, ttl_s: 600 }),
  });
  assert.equal(r.status, 201);
  return (await r.json()).token;
}

test("with #token= the page runs code as the token's user and session", async () => {
  const token = await issueToken("ada-web-1");
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  const sockets = [];
  const authorized = [];
  page.on("websocket", (ws) => sockets.push(ws.url()));
  page.on("request", (r) => r.url().includes("/v1/") && authorized.push(r.headers()["authorization"]));
  await page.goto(`${stack.url}#token=${token}`);
  await page.locator("body[data-conn=open]").waitFor();
  await page.locator("#lang:not([disabled])").waitFor();
  // The token left the address bar (screenshots, history, copied links).
  assert.equal(await page.evaluate(() => location.hash), "");
  await page.locator("#lang").selectOption("python");
  await page.locator(".cm-content").click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.insertText('print("signed in")\n');
  await page.keyboard.press("ControlOrMeta+Enter");
  await page.locator("#verdict:not([hidden])").waitFor();
  assert.equal(await page.locator("#verdict").getAttribute("data-status"), "ok");
  assert.equal(await outputText(page), "signed in\n");
  const url = new URL(sockets[0]);
  assert.equal(url.searchParams.get("token"), token);
  assert.equal(url.searchParams.get("session_id"), "ada-web-1");
  assert.ok(authorized.length > 0 && authorized.every((h) => h === `Bearer ${token}`), `${authorized}`);
  // A reload keeps the token (sessionStorage) and the session: the last run shows again.
  await page.reload();
  await page.locator("#verdict:not([hidden])").waitFor();
  assert.equal(await outputText(page), "signed in\n");
  await shot(page, "token");
  await context.close();
});

test("without a token the page says one is needed", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  await page.goto(stack.url);
  await page.locator("#lang:not([disabled])").waitFor();
  await page.locator("#run").click();
  await page.locator("#error:not([hidden])").waitFor();
  assert.match(await page.locator("#error").textContent(), /session token/);
  assert.notEqual(await page.locator("body").getAttribute("data-conn"), "open");
  await shot(page, "no-token");
  await context.close();
});
