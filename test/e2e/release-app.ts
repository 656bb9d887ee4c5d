// The app of the progressive-delivery tests (e2e releases, bench/release.ts):
// DELAY_MS makes each answer wait that long; ERROR_EVERY=n makes every n-th
// request of `/` answer 500, while /healthz always passes (so only the
// traffic shows a bad release).

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Writes the app into `work`/shop; returns its directory. */
export function writeReleaseApp(work: string): string {
  const dir = join(work, "shop");
  mkdirSync(dir);
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name: "shop", private: true, type: "module", scripts: { start: "node server.js" } }),
  );
  writeFileSync(
    join(dir, "server.js"),
    [
      'import { createServer } from "node:http";',
      "const delay = Number(process.env.DELAY_MS ?? 0);",
      "const every = Number(process.env.ERROR_EVERY ?? 0);",
      "let n = 0;",
      "createServer((req, res) => {",
      '  if (req.url === "/healthz") return res.end("ok");',
      "  n++;",
      "  setTimeout(() => {",
      "    if (every > 0 && n % every === 0) { res.statusCode = 500; return res.end('broken'); }",
      '    res.end("release " + process.env.HERD_RELEASE);',
      "  }, delay);",
      "}).listen(Number(process.env.PORT));",
    ].join("\n"),
  );
  return dir;
}

/** herd.yaml of app shop: 2 instances of web at `host`, with this `rollout:` (lines) and env. */
export function writeReleaseManifest(
  dir: string,
  host: string,
  rollout: string[],
  env: Record<string, number>,
): void {
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      "app: shop",
      "services:",
      "  web:",
      "    command: node server.js",
      "    instances: 2",
      "    resources: { cpu: 0.1, memory: 48Mi }",
      "    health: { path: /healthz }",
      `    routes: [{ host: ${host} }]`,
      `    env: { ${Object.entries(env)
        .map(([k, v]) => `${k}: ${v}`)
        .join(", ")} }`,
      "    rollout:",
      ...rollout.map((l) => `      ${l}`),
      "",
    ].join("\n"),
  );
}
