// The app of the bad-release tests (e2e remediation, bench/autoscale-rollback.ts):
// with BAD=1 every second request answers 500 while its health check passes,
// so the rollout of a bad release succeeds and only its traffic shows it.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Writes the app into `work`/flaky; returns its directory. */
export function writeFlakyApp(work: string): string {
  const dir = join(work, "flaky");
  mkdirSync(dir);
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name: "flaky", private: true, type: "module", scripts: { start: "node server.js" } }),
  );
  writeFileSync(
    join(dir, "server.js"),
    [
      'import { createServer } from "node:http";',
      "let n = 0;",
      "createServer((req, res) => {",
      '  if (req.url === "/health") return res.end("ok");',
      '  if (process.env.BAD === "1" && n++ % 2 === 1) { res.statusCode = 500; return res.end("broken"); }',
      '  res.end("release " + process.env.HERD_RELEASE);',
      "}).listen(Number(process.env.PORT));",
    ].join("\n"),
  );
  return dir;
}

/** Writes its herd.yaml: two instances of web routed at `host`, bad (BAD=1) or good. */
export function writeFlakyManifest(dir: string, host: string, bad: boolean): void {
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      "app: flaky",
      "services:",
      "  web:",
      "    command: node server.js",
      "    instances: 2",
      "    resources: { cpu: 0.1, memory: 32Mi }",
      "    health: { path: /health }",
      `    env: { BAD: "${bad ? 1 : 0}" }`,
      `    routes: [{ host: ${host} }]`,
      "",
    ].join("\n"),
  );
}
