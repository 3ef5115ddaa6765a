// Every language the executors offer: the editor loads its grammar (highlighted tokens, no
// page error) and shows its first program, and that program really runs and greets (through
// the API, two at a time: some compile for seconds).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { launchBrowser, openEditor, startStack } from "./harness.mjs";

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

test("each language: highlighted in the editor, and its first program runs", async () => {
  const page = await openEditor(browser, stack.url);
  const langs = await page.locator("#lang option").evaluateAll((os) => os.map((o) => o.value));
  assert.ok(langs.length >= 1);
  const samples = {};
  for (const lang of langs) {
    await page.locator("#lang").selectOption(lang);
    // The grammar arrives as its own chunk: tokens get highlight classes once it has.
    await page.waitForFunction(
      (id) => window.hearth.grammar() === id && document.querySelectorAll(".cm-content .cm-line span").length > 0,
      lang,
    );
    samples[lang] = await page.evaluate(() => window.hearth.editorText());
    assert.ok(samples[lang].length > 0, `${lang} has a first program`);
  }
  assert.deepEqual(page.errors, []);
  await page.context().close();

  const failed = [];
  const queue = [...langs];
  await Promise.all(
    [0, 1].map(async () => {
      for (let lang = queue.shift(); lang; lang = queue.shift()) {
        const r = await fetch(`${stack.url}v1/runs?wait=true`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ user_id: "u1", session_id: `sample-${lang}`, lang, code: samples[lang], stdin: "Ada\n" }),
        });
        const result = await r.json();
        if (result.status !== "ok" || !/Hello, (Ada|hearth)!/.test(result.stdout)) {
          failed.push(`${lang}: ${result.status} ${JSON.stringify(result.stdout)} ${JSON.stringify(result.stderr || result.compile_output || result.error)}`);
        }
      }
    }),
  );
  assert.deepEqual(failed, []);
});
