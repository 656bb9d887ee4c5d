// The console's first-load budget: the JavaScript index.html loads before the
// first page shows (its module scripts and their modulepreloads), gzip -9 as
// the control plane serves it, must be at most 300 KB. Run after every build
// (npm run build:console); exits 1 over budget.
//
//   node scripts/console-size.ts [console/dist]

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

/** 300 KB of compressed JavaScript (issue 13). */
export const BUDGET_BYTES = 300 * 1000;

/** The JS files index.html loads at once: module scripts and modulepreload links (paths under dist). */
export function entryScripts(indexHtml: string): string[] {
  const out = new Set<string>();
  for (const m of indexHtml.matchAll(/<script[^>]*type="module"[^>]*src="([^"]+)"/g)) out.add(m[1]);
  for (const m of indexHtml.matchAll(/<link[^>]*rel="modulepreload"[^>]*href="([^"]+)"/g)) out.add(m[1]);
  return [...out];
}

/** Each entry script's gzip size, and the sum. */
export function firstLoad(dist: string): {
  files: { path: string; raw: number; gzip: number }[];
  gzip: number;
} {
  const html = readFileSync(join(dist, "index.html"), "utf8");
  const files = entryScripts(html).map((src) => {
    const body = readFileSync(join(dist, src.replace(/^\//, "")));
    return { path: src, raw: body.length, gzip: gzipSync(body, { level: 9 }).length };
  });
  return { files, gzip: files.reduce((n, f) => n + f.gzip, 0) };
}

if (import.meta.main) {
  const dist = process.argv[2] ?? join(import.meta.dirname, "../console/dist");
  const { files, gzip } = firstLoad(dist);
  if (files.length === 0) {
    console.error(`console-size: index.html in ${dist} loads no module script`);
    process.exit(1);
  }
  for (const f of files) console.log(`console-size: ${f.path} ${f.raw} B, ${f.gzip} B gzip`);
  const share = ((gzip / BUDGET_BYTES) * 100).toFixed(0);
  console.log(
    `console-size: first load ${(gzip / 1000).toFixed(1)} KB gzip JS, ${share}% of the ${BUDGET_BYTES / 1000} KB budget`,
  );
  if (gzip > BUDGET_BYTES) {
    console.error("console-size: over budget: split a page out (import()) or drop a dependency");
    process.exit(1);
  }
}
