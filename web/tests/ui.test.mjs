// End-to-end tests of the browser UI: Debian's Chromium (playwright-core) against a real
// hearth (nats-server, `hearth gateway`, `hearth executor`, real sandboxes). Screenshots go
// to web/test-results/. Run from web/: `node --test tests/` (scripts/test does).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  launchBrowser,
  openEditor,
  outputText,
  shot,
  startProxy,
  startStack,
  typeCode,
  until,
} from "./harness.mjs";

let stack;
let browser;

before(async () => {
  stack = await startStack({ slots: 2 });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

/** Puts `code` in the editor as one insertion (typing is tested once, below). */
async function setCode(page, code) {
  await page.locator(".cm-content").click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.insertText(code);
}

async function pickLanguage(page, id) {
  await page.locator("#lang").selectOption(id);
}

/** Starts a run with `start` and waits for its own verdict (not the previous run's). */
async function runToVerdict(page, start) {
  const before = await page.locator("#output").getAttribute("data-run-id");
  await start();
  await page.waitForFunction((old) => {
    const out = document.querySelector("#output");
    return out.dataset.runId && out.dataset.runId !== old && !document.querySelector("#verdict").hidden;
  }, before);
}

const verdict = (page) => page.locator("#verdict:not([hidden])");
const fact = (page, name) => page.locator(`#verdict [data-fact="${name}"] dd`).textContent();

test("typed code runs; output streams in before the program ends; then the verdict", async () => {
  const page = await openEditor(browser, stack.url);
  await pickLanguage(page, "python");
  await typeCode(page, ["import time", 'print("first")', "time.sleep(3)", 'print("second")']);
  assert.equal(
    await page.evaluate(() => document.querySelector(".cm-content").innerText.trim()),
    'import time\nprint("first")\ntime.sleep(3)\nprint("second")',
  );
  await page.keyboard.press("ControlOrMeta+Enter");
  // The page as it was the moment the first line showed (one snapshot, taken in the page).
  const seen = await (
    await page.waitForFunction(() => {
      const text = document.querySelector("#output").textContent;
      if (!text.includes("first")) return null;
      return {
        text,
        run: document.body.dataset.run,
        verdictHidden: document.querySelector("#verdict").hidden,
        stopEnabled: !document.querySelector("#stop").disabled,
        runEnabled: !document.querySelector("#run").disabled,
      };
    })
  ).jsonValue();
  // The first line is on the page while the program is still running (it sleeps 3 s).
  assert.deepEqual(seen, { text: "first\n", run: "running", verdictHidden: true, stopEnabled: true, runEnabled: false });
  await shot(page, "streaming");
  await verdict(page).waitFor();
  assert.equal(await outputText(page), "first\nsecond\n");
  assert.equal(await page.locator("#verdict").getAttribute("data-status"), "ok");
  assert.equal(await page.locator("#verdict .badge").textContent(), "OK");
  assert.equal(await fact(page, "exit code"), "0");
  const wall = await fact(page, "wall");
  assert.match(wall, /^\d+(\.\d+)? (ms|s)$/);
  assert.ok(wall.endsWith(" s") && parseFloat(wall) >= 3, `wall ${wall} covers the 3 s sleep`);
  assert.match(await fact(page, "CPU"), /^\d+(\.\d+)? (ms|s)$/);
  assert.match(await fact(page, "peak memory"), /^\d+(\.\d+)? (KB|MB)$/);
  assert.equal(await fact(page, "output"), "complete");
  assert.ok(await page.locator("#run").isEnabled());
  await shot(page, "verdict-ok");
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("stderr is set apart; a failing program's exit code; a compile error's output", async () => {
  const page = await openEditor(browser, stack.url);
  await pickLanguage(page, "python");
  await setCode(page, 'import sys\nprint("to stdout")\nprint("to stderr", file=sys.stderr)\nsys.exit(3)\n');
  await page.locator("#run").click();
  await verdict(page).waitFor();
  assert.equal(await page.locator("#output .out-stderr").textContent(), "to stderr\n");
  assert.equal(await page.locator("#output .out-stdout").textContent(), "to stdout\n");
  assert.notEqual(
    await page.locator("#output .out-stderr").evaluate((e) => getComputedStyle(e).color),
    await page.locator("#output .out-stdout").evaluate((e) => getComputedStyle(e).color),
  );
  assert.equal(await page.locator("#verdict").getAttribute("data-status"), "runtime_error");
  assert.equal(await fact(page, "exit code"), "3");
  await shot(page, "stderr");

  await pickLanguage(page, "c");
  await setCode(page, "int main(void) { return missing; }\n");
  await runToVerdict(page, () => page.locator("#run").click());
  assert.equal(await page.locator("#verdict").getAttribute("data-status"), "compile_error");
  await page.locator("#compile:not([hidden])").waitFor();
  assert.match(await page.locator("#compile-text").textContent(), /missing/);
  await shot(page, "compile-error");
  await page.context().close();
});

test("verdicts: killed by a signal; output cut at the limit", async () => {
  const page = await openEditor(browser, stack.url);
  await pickLanguage(page, "python");
  await setCode(page, "import os, signal\nprint('before', flush=True)\nos.kill(os.getpid(), signal.SIGSEGV)\n");
  await runToVerdict(page, () => page.locator("#run").click());
  assert.equal(await page.locator("#verdict").getAttribute("data-status"), "signaled");
  assert.equal(await fact(page, "signal"), "11 (SIGSEGV)");
  assert.equal(await page.locator('#verdict [data-fact="exit code"]').count(), 0);
  await setCode(page, "import sys\nsys.stdout.write('x' * 3_000_000)\n");
  await runToVerdict(page, () => page.locator("#run").click());
  assert.equal(await page.locator("#verdict").getAttribute("data-status"), "output_limit");
  assert.equal(await fact(page, "output"), "truncated at the limit");
  // Every byte up to the limit (1 MiB by default) streamed in, and nothing past it.
  assert.equal(await page.locator("#output").evaluate((e) => e.textContent.length), 1 << 20);
  assert.equal(await page.locator("#output").getAttribute("data-reassembled"), null);
  await shot(page, "output-limit");
  await page.context().close();
});

test("a dropped WebSocket reconnects with since= and shows the output it missed, once", async () => {
  const proxy = await startProxy(stack.port);
  try {
    const page = await openEditor(browser, proxy.url);
    await pickLanguage(page, "python");
    await setCode(page, "import time\nfor i in range(1, 9):\n    print(i)\n    time.sleep(0.4)\n");
    await page.keyboard.press("ControlOrMeta+Enter");
    await page.locator("#output", { hasText: "3" }).waitFor();
    // Cut every connection of the page (TCP reset) and refuse new ones for a while.
    proxy.refuse();
    proxy.dropAll();
    await page.locator("body[data-conn=reconnecting]").waitFor();
    await page.locator("#reconnecting:not([hidden])").waitFor();
    assert.match(await page.locator("#conn").textContent(), /Reconnecting/);
    await shot(page, "reconnecting");
    // The run ends while the page is cut off: what it prints meanwhile reaches the page only
    // through the replay.
    const runId = await page.locator("#output").getAttribute("data-run-id");
    await until("the run to end", async () => (await fetch(`${stack.url}v1/runs/${runId}`)).status === 200);
    const before = await outputText(page);
    assert.ok(!before.includes("8"), `output before the reconnect: ${JSON.stringify(before)}`);
    const sinceBefore = proxy.requests.filter((r) => r.includes("/v1/ws?")).length;
    proxy.resume();
    await verdict(page).waitFor();
    await page.locator("body[data-conn=open]").waitFor();
    assert.equal(await outputText(page), "1\n2\n3\n4\n5\n6\n7\n8\n");
    assert.equal(await page.locator("#output").getAttribute("data-reassembled"), null, "streamed, not rebuilt from the result");
    assert.equal(await page.locator("#verdict").getAttribute("data-status"), "ok");
    assert.ok(await page.locator("#reconnecting").isHidden());
    const sockets = proxy.requests.filter((r) => r.includes("/v1/ws?"));
    assert.ok(sockets.length > sinceBefore, "the page opened a new socket");
    const since = /[?&]since=(\d+)/.exec(sockets.at(-1));
    assert.ok(since && Number(since[1]) > 0, `the reconnect resumes: ${sockets.at(-1)}`);
    assert.ok(!/[?&]since=/.test(sockets[0]), "the first socket starts from the beginning");
    await shot(page, "reconnected");
    assert.deepEqual(page.errors, []);
    await page.context().close();
  } finally {
    await proxy.close();
  }
});

test("the browser going offline and back: the page reconnects and catches up", async () => {
  const page = await openEditor(browser, stack.url);
  await pickLanguage(page, "python");
  await setCode(page, "import time\nfor i in range(1, 7):\n    print('tick', i)\n    time.sleep(0.4)\n");
  await page.keyboard.press("ControlOrMeta+Enter");
  await page.locator("#output", { hasText: "tick 2" }).waitFor();
  await page.context().setOffline(true);
  await page.locator("body[data-conn=reconnecting]").waitFor();
  const runId = await page.locator("#output").getAttribute("data-run-id");
  await until("the run to end", async () => (await fetch(`${stack.url}v1/runs/${runId}`)).status === 200);
  assert.ok(!(await outputText(page)).includes("tick 6"));
  await page.context().setOffline(false);
  await verdict(page).waitFor();
  assert.equal(await outputText(page), [1, 2, 3, 4, 5, 6].map((i) => `tick ${i}\n`).join(""));
  assert.equal(await page.locator("#output").getAttribute("data-reassembled"), null);
  await page.locator("body[data-conn=open]").waitFor();
  await page.context().close();
});

test("a gateway restart: the page reconnects and catches up", async () => {
  const page = await openEditor(browser, stack.url);
  await pickLanguage(page, "python");
  await setCode(page, "import time\nfor i in range(1, 7):\n    print('line', i)\n    time.sleep(0.5)\n");
  await page.keyboard.press("ControlOrMeta+Enter");
  await page.locator("#output", { hasText: "line 2" }).waitFor();
  await stack.stopGateway();
  await page.locator("body[data-conn=reconnecting]").waitFor();
  // SIGTERM: the gateway said "service restart" (1012) and the page took it as a reconnect.
  assert.equal(await page.locator("body").getAttribute("data-close-code"), "1012");
  await stack.startGateway();
  await verdict(page).waitFor({ timeout: 30000 });
  assert.equal(await outputText(page), [1, 2, 3, 4, 5, 6].map((i) => `line ${i}\n`).join(""));
  assert.equal(await page.locator("#output").getAttribute("data-reassembled"), null);
  assert.equal(await page.locator("#verdict").getAttribute("data-status"), "ok");
  await page.locator("body[data-conn=open]").waitFor();
  await page.context().close();
});

test("Stop ends a running program as cancelled", async () => {
  const page = await openEditor(browser, stack.url);
  await pickLanguage(page, "python");
  await setCode(page, "import time\nprint('started')\nwhile True:\n    time.sleep(0.1)\n");
  await page.locator("#run").click();
  await page.locator("#output", { hasText: "started" }).waitFor();
  assert.equal(await verdict(page).count(), 0);
  await page.locator("#stop").click();
  await verdict(page).waitFor();
  assert.equal(await page.locator("#verdict").getAttribute("data-status"), "cancelled");
  assert.equal(await page.locator("#verdict .badge").textContent(), "Stopped");
  assert.ok(await page.locator("#stop").isDisabled());
  assert.ok(await page.locator("#run").isEnabled());
  await shot(page, "stopped");
  await page.context().close();
});

test("interactive stdin: lines sent while the program runs, then end of input", async () => {
  const page = await openEditor(browser, stack.url);
  await pickLanguage(page, "python");
  await setCode(page, 'import sys\nname = input("Your name? ")\nprint("Hello, " + name + "!")\nrest = sys.stdin.read()\nprint("rest:", rest.upper(), end="")\n');
  await page.locator("#interactive").check();
  await page.locator("#run").click();
  await page.locator("#output", { hasText: "Your name?" }).waitFor();
  await page.locator("#live-input:not([hidden])").waitFor();
  await page.locator("#stdin-line").fill("Ada");
  await page.keyboard.press("Enter");
  await page.locator("#output", { hasText: "Hello, Ada!" }).waitFor();
  assert.equal(await verdict(page).count(), 0, "still running: stdin is open");
  await page.locator("#stdin-line").fill("more");
  await page.keyboard.press("Enter");
  await page.locator("#output .out-stdin", { hasText: "more" }).waitFor();
  await shot(page, "interactive");
  await page.locator("#eof").click();
  await verdict(page).waitFor();
  assert.equal(await page.locator("#verdict").getAttribute("data-status"), "ok");
  assert.match(await outputText(page), /rest: MORE\n$/);
  await page.context().close();
});

test("the status page shows live numbers", async () => {
  const page = await (await browser.newContext({ viewport: { width: 1200, height: 800 } })).newPage();
  await page.goto(`${stack.url}status`);
  const num = (k) => page.locator(`.num[data-k="${k}"]`);
  await page.locator("body[data-conn=open]").waitFor();
  await until("one executor online", async () => (await num("executors_online").textContent()) === "1");
  assert.equal(await page.locator('[data-k="slots"]').textContent(), "of 2 slots");
  assert.equal(await page.locator("#executors tbody tr td").first().textContent(), "ui-ex1");
  // Three runs of 5 s on 2 slots: two run, one waits; the page shows it without a reload.
  const body = (i) => ({ user_id: "u1", session_id: `status-${i}`, lang: "bash", code: "sleep 5; echo done" });
  for (const i of [1, 2, 3]) {
    const r = await fetch(`${stack.url}v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body(i)) });
    assert.equal(r.status, 202);
  }
  await until("two slots busy", async () => (await num("busy").textContent()) === "2", 15000);
  await until("one run waiting", async () => (await num("queue_waiting").textContent()) === "1", 15000);
  await shot(page, "status-busy");
  await until("all slots free", async () => (await num("busy").textContent()) === "0", 40000);
  await until("the queue empty", async () => (await num("queue_waiting").textContent()) === "0", 15000);
  assert.match(await num("p50").textContent(), /^\d+(\.\d+)? (ms|s)$/);
  assert.match(await num("p99").textContent(), /^\d+(\.\d+)? (ms|s)$/);
  const runs = Number(/over (\d+) run/.exec(await page.locator('[data-k="latency"]').textContent())[1]);
  assert.ok(runs >= 3, `latency over ${runs} runs`);
  await shot(page, "status");
  await page.context().close();
});

test("a phone-width page, used with the keyboard only", async () => {
  const page = await openEditor(browser, stack.url, { width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling (${overflow}px too wide)`);
  for (const id of ["lang", "run", "stop", "stdin", "output"]) {
    const box = await page.locator(`#${id}`).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `#${id} fits the width`);
  }
  // The editor has the focus when the page opens; keyboard only from here.
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.type('print("from the keyboard")');
  await runToVerdict(page, () => page.keyboard.press("ControlOrMeta+Enter"));
  assert.equal(await outputText(page), "from the keyboard\n");
  // Tab indents in the editor; after Ctrl+M (CodeMirror's tab-focus mode) Tab leaves it for
  // the next control, the stdin box. (Escape then Tab does the same within 2 s: not tested,
  // it is a race on a busy machine.)
  await page.locator(".cm-content").focus();
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.classList.contains("cm-content")), true);
  await page.keyboard.press("Control+m");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.id || document.activeElement.outerHTML.slice(0, 80)), "stdin");
  // From the top, Tab goes to the language picker, then Run; Stop is skipped while idle.
  await page.locator(".brand").focus();
  const order = [];
  for (let i = 0; i < 3; i++) {
    await page.keyboard.press("Tab");
    order.push(await page.evaluate(() => document.activeElement.id || document.activeElement.textContent));
  }
  assert.deepEqual(order, ["lang", "run", "Status"]);
  await shot(page, "phone");
  await page.context().close();
});
