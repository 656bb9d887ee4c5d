// The Redis add-on's start script, run for real (Debian's redis-server): the
// server binds loopback and the node's own addresses only, and its metrics
// loop pushes Prometheus text with the add-on's label and the tenant's ingest
// token to the relay's /api/v1/metrics/write; it ends when the server ends.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { freePort } from "../common/free-port.ts";
import { parseTextWrite } from "../observe/ingest.ts";
import { redisCollect } from "./metrics.ts";
import { ensureRedis, redisSource } from "./redis.ts";

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test("the Redis add-on's script pushes its figures through the relay and binds no wildcard", async (t) => {
  const redis = await ensureRedis();
  const dir = mkdtempSync(join(tmpdir(), "herd-addon-metrics-"));
  const pushes: { auth?: string; type?: string; body: string }[] = [];
  const relay = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      if (req.url === "/api/v1/metrics/write")
        pushes.push({ auth: req.headers.authorization, type: req.headers["content-type"], body });
      res.end("{}");
    });
  });
  await new Promise<void>((r) => relay.listen(0, "127.0.0.1", r));
  const relayPort = (relay.address() as AddressInfo).port;
  redisSource(dir, { name: "cache", ...redis, units: 1, maxConnections: 20 });
  const port = await freePort();
  const child = spawn("sh", ["start.sh"], {
    cwd: dir,
    detached: true,
    stdio: ["ignore", "ignore", "pipe"],
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      HERD_DATA_DIR: dir,
      ADDON_PASSWORD: "adminpw",
      REDIS_SERVER: redis.server,
      REDIS_CLI: redis.cli,
      REDIS_MAX_CLIENTS: "20",
      HERD_ADDON_METRICS_S: "1",
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${relayPort}/api/v1/otlp`,
      OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20ingest-tok",
    },
  });
  let stderr = "";
  child.stderr?.on("data", (d) => (stderr += d));
  const pgid = child.pid as number;
  t.after(() => {
    if (alive(pgid)) process.kill(-pgid, "SIGKILL");
    relay.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const until = Date.now() + 60_000;
  while (!pushes.some((p) => /redis_connected_clients/.test(p.body))) {
    assert.ok(Date.now() < until, `no push within 60 s; stderr: ${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const p = pushes.find((x) => /redis_connected_clients/.test(x.body));
  assert.equal(p?.auth, "Bearer ingest-tok");
  assert.equal(p?.type, "text/plain");
  assert.match(p?.body ?? "", /^redis_up\{addon="cache"\} 1$/m);
  assert.match(p?.body ?? "", /^redis_memory_used_bytes\{addon="cache"\} \d+$/m);
  // What herd's write route parses: every series labelled with the add-on.
  const series = parseTextWrite(p?.body ?? "", Date.now());
  assert.ok(series.length >= 6, p?.body);
  assert.ok(series.every((s) => s.labels.addon === "cache"));
  assert.match(p?.body ?? "", /^redis_config_maxclients\{addon="cache"\} 20$/m);
  // An empty server has no db line in INFO: its keys are 0, not missing.
  assert.match(p?.body ?? "", /^redis_db_keys\{addon="cache",db="db0"\} 0$/m);
  execFileSync(redis.cli, ["-h", "127.0.0.1", "-p", String(port), "--no-auth-warning", "SET", "k", "v"], {
    env: { REDISCLI_AUTH: "adminpw" },
  });
  const keyed = Date.now() + 20_000;
  while (!pushes.some((x) => /^redis_db_keys\{addon="cache",db="db0"\} 1$/m.test(x.body))) {
    assert.ok(Date.now() < keyed, `no push with the key within 20 s: ${pushes.at(-1)?.body}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const withKey = pushes.find((x) => /db="db0"\} 1$/m.test(x.body))?.body ?? "";
  assert.equal(withKey.match(/^redis_db_keys/gm)?.length, 1, withKey);

  const bind = execFileSync(
    redis.cli,
    ["-h", "127.0.0.1", "-p", String(port), "--no-auth-warning", "CONFIG", "GET", "bind"],
    {
      env: { REDISCLI_AUTH: "adminpw" },
      encoding: "utf8",
    },
  );
  assert.match(bind, /127\.0\.0\.1/);
  assert.doesNotMatch(bind, /\*|0\.0\.0\.0/);
  // The token never shows on the command line of the script's processes (server, loop, curl).
  const ps = execFileSync("ps", ["-eo", "pgid=,args="], { encoding: "utf8" })
    .split("\n")
    .filter((l) => l.trim().split(/\s+/)[0] === String(pgid));
  assert.ok(
    ps.some((l) => l.includes("redis-server")),
    ps.join("\n"),
  );
  assert.doesNotMatch(ps.join("\n"), /ingest-tok/);

  // The server ends (its process is the script's, exec'd): the loop follows within an interval.
  process.kill(pgid, "SIGTERM");
  const gone = Date.now() + 20_000;
  for (;;) {
    let members = "";
    try {
      members = execFileSync("pgrep", ["-g", String(pgid)], { encoding: "utf8" }).trim();
    } catch {}
    if (!members) break;
    assert.ok(Date.now() < gone, `the process group lives on: ${members}`);
    await new Promise((r) => setTimeout(r, 200));
  }
});

test("a Redis server that does not answer is redis_up 0, nothing else", async () => {
  const redis = await ensureRedis();
  const out = execFileSync("sh", ["-c", `${redisCollect("cache")}collect`], {
    env: {
      PATH: process.env.PATH,
      PORT: String(await freePort()),
      ADDON_PASSWORD: "x",
      REDIS_CLI: redis.cli,
    },
    encoding: "utf8",
  });
  assert.equal(out, 'redis_up{addon="cache"} 0\n');
});
