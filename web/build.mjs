// Builds the browser UI into dist/: the two pages, their scripts and styles (bundled and
// minified by esbuild, grammars split into chunks loaded on demand), and the icon. The
// gateway serves dist/ (docs/ui.md). `node build.mjs` from web/ (scripts/setup runs it).

import * as esbuild from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

const out = new URL("./dist/", import.meta.url).pathname;
const src = new URL("./src/", import.meta.url).pathname;

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const result = await esbuild.build({
  entryPoints: { app: `${src}app.ts`, status: `${src}status.ts` },
  outdir: out,
  bundle: true,
  splitting: true,
  format: "esm",
  minify: true,
  sourcemap: "linked",
  target: ["chrome109", "firefox115", "safari16"],
  chunkNames: "chunk-[hash]",
  loader: { ".svg": "dataurl" },
  metafile: true,
  logLevel: "warning",
});
for (const page of ["index.html", "status.html", "favicon.svg"]) await copyFile(`${src}${page}`, `${out}${page}`);
const bytes = Object.entries(result.metafile.outputs).filter(([f]) => !f.endsWith(".map"));
const total = bytes.reduce((n, [, o]) => n + o.bytes, 0);
const initial = bytes.filter(([f]) => /\/(app|status)\.(js|css)$/.test(f)).reduce((n, [, o]) => n + o.bytes, 0);
console.log(`web/dist: ${bytes.length} files, ${(total / 1024).toFixed(0)} KiB (pages' own scripts and styles ${(initial / 1024).toFixed(0)} KiB)`);
