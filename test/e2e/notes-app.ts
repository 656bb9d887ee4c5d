// The notes app of the add-on e2e tests: it keeps notes in its DATABASE_URL
// through psql (no npm driver needed): PUT /notes?text=… and GET /notes
// answer every note, sorted, comma-separated; 503 without DATABASE_URL. And the
// counter app on a Redis add-on (deployCounter).

import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import type { Herd } from "./harness.ts";

const NOTES_JS = `
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
const sql = (q) => execFileSync(process.env.PG_BIN + "/psql", [process.env.DATABASE_URL, "-tAc", q], { encoding: "utf8" });
createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/health") return res.end("ok");
  try {
    if (!process.env.DATABASE_URL) { res.statusCode = 503; return res.end("no DATABASE_URL"); }
    sql("CREATE TABLE IF NOT EXISTS notes (text text)");
    if (req.method === "PUT") sql("INSERT INTO notes VALUES ('" + url.searchParams.get("text").replace(/'/g, "''") + "')");
    res.end(sql("SELECT string_agg(text, ',' ORDER BY text) FROM notes").trim());
  } catch (err) { res.statusCode = 500; res.end(String(err.stderr ?? err)); }
}).listen(Number(process.env.PORT));
`;

/** PUT through the gateway with the app's Host (fetch cannot set Host). */
export function putNote(herd: Herd, path: string, host: string): Promise<{ status: number; body: string }> {
  const u = new URL(herd.gatewayUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path,
        method: "PUT",
        headers: { host },
        agent: false,
        timeout: 20_000,
      },
      (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

const COUNTER_JS = `import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
createServer((req, res) => {
  if (req.url === "/health") return res.end("ok");
  if (!process.env.REDIS_URL) { res.statusCode = 503; return res.end("no REDIS_URL"); }
  try {
    // redis-cli prints a refused AUTH or command on stdout and may still exit 0: only a number is a count.
    const out = execFileSync(process.env.REDIS_CLI, ["-u", process.env.REDIS_URL, "--no-auth-warning", "INCR", "hits"], { encoding: "utf8" }).trim();
    if (!/^\\d+$/.test(out)) res.statusCode = 500;
    res.end(out);
  } catch (err) { res.statusCode = 500; res.end(String(err.stderr ?? err)); }
}).listen(Number(process.env.PORT));
`;

/** Deploys `server` as `app` (one small web instance at `host`, with `env`), its source under `work`. */
async function deployServer(
  herd: Herd,
  work: string,
  app: string,
  host: string,
  server: string,
  env: string,
): Promise<void> {
  const dir = join(work, app);
  mkdirSync(dir);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: app, private: true, type: "module" }));
  writeFileSync(join(dir, "server.js"), server);
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      `app: ${app}`,
      "services:",
      "  web:",
      "    command: node server.js",
      "    instances: 1",
      "    resources: { cpu: 0.1, memory: 128Mi }",
      "    health: { path: /health }",
      `    env: { ${env} }`,
      `    routes: [{ host: ${host} }]`,
      "",
    ].join("\n"),
  );
  const d = await herd.cli(["deploy", dir]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
}

/** Deploys the notes app as `app` at `host`, its source under `work`; `bin` is PostgreSQL's bin dir (psql). */
export function deployNotes(herd: Herd, work: string, app: string, host: string, bin: string): Promise<void> {
  return deployServer(herd, work, app, host, NOTES_JS, `PG_BIN: ${bin}`);
}

/** The counter app: every GET / increments `hits` in its REDIS_URL (through redis-cli) and answers the count. */
export function deployCounter(
  herd: Herd,
  work: string,
  app: string,
  host: string,
  cli: string,
): Promise<void> {
  return deployServer(herd, work, app, host, COUNTER_JS, `REDIS_CLI: ${cli}`);
}
