// Add-on operations end to end, with real PostgreSQL and Redis (Debian's
// packages): each server's figures reach herd's metrics store (queried through
// the Prometheus API, shown by `herd addons metrics`), the servers listen on
// loopback and the node's addresses only (no wildcard), herd's own add-ons
// refuse bind parameters (400 naming the field), and a destroyed Postgres
// add-on's final backup is listed and restored into a new add-on whose app
// reads its notes back.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ensurePostgres } from "../../src/addons/postgres.ts";
import { ensureRedis } from "../../src/addons/redis.ts";
import type { Addon, FinalAddonBackup } from "../../src/model/addon.ts";
import { cleanupHerd, type Herd, startHerd, waitFor } from "./harness.ts";
import { deployCounter, deployNotes, putNote } from "./notes-app.ts";

let herd: Herd;
let bin: string;
const work = mkdtempSync(join(tmpdir(), "herd-addons-ops-e2e-"));
const HOST = "opsnotes.localhost";

before(async () => {
  bin = (await ensurePostgres()).bin;
  await ensureRedis();
  herd = await startHerd();
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

interface PromVector {
  data: { result: { metric: Record<string, string>; value: [number, string] }[] };
}

/** The first sample of an instant query as the platform admin (every tenant's series), or undefined. */
async function sample(query: string): Promise<{ metric: Record<string, string>; value: number } | undefined> {
  const r = await herd.api<PromVector>("GET", `/prom/api/v1/query?query=${encodeURIComponent(query)}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const s = r.body.data.result[0];
  return s ? { metric: s.metric, value: Number(s.value[1]) } : undefined;
}

/** The addresses a local TCP port is listened on (`ss`). */
function listening(port: number): string[] {
  const out = execFileSync("ss", ["-Hltn", `sport = :${port}`], { encoding: "utf8" });
  return out
    .split("\n")
    .filter(Boolean)
    .map((l) => l.trim().split(/\s+/)[3]);
}

async function addonInfo(name: string): Promise<Addon & { state: string }> {
  const r = await herd.api<Addon & { state: string }>("GET", `/addons/${name}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

function assertNoWildcard(name: string, endpoint: string | undefined): void {
  assert.ok(endpoint, `${name} has an endpoint`);
  const port = Number(endpoint.slice(endpoint.lastIndexOf(":") + 1));
  const on = listening(port);
  assert.ok(on.length > 0, `${name} listens on ${port}`);
  assert.ok(on.includes(`127.0.0.1:${port}`), `${name} on loopback: ${on.join(" ")}`);
  for (const a of on) assert.doesNotMatch(a, /^(\*|0\.0\.0\.0|\[::\]):/, `${name} binds no wildcard: ${a}`);
}

test("Postgres: metrics in herd, no wildcard bind, no bind parameters, final backup restored into a new add-on", async () => {
  await deployNotes(herd, work, "opsnotes", HOST, bin);
  const c = await herd.cli(["addons", "create", "postgres", "--app", "opsnotes"], { timeoutMs: 240_000 });
  assert.equal(c.code, 0, c.stdout + c.stderr + herd.output().slice(-3000));
  await waitFor(
    "the release with DATABASE_URL to write",
    async () => {
      const r = await putNote(herd, "/notes?text=kept", HOST);
      return r.status === 200 ? r : undefined;
    },
    180_000,
  );
  assertNoWildcard("opsnotes-postgres", (await addonInfo("opsnotes-postgres")).endpoint);

  // The server's figures are pushed every 15 s: the bound database's size and the connections show up.
  const size = await waitFor(
    "the add-on's figures in herd's metrics",
    () => sample('pg_database_size_bytes{addon="opsnotes-postgres",datname="db_opsnotes"}'),
    120_000,
  );
  assert.equal(size.metric.tenant, "default", "the tenant's series (set by herd, not the script)");
  assert.ok(size.value > 1_000_000, `a database has a size: ${size.value}`);
  const up = await sample('pg_up{addon="opsnotes-postgres"}');
  assert.equal(up?.value, 1);
  assert.equal((await sample('pg_settings_max_connections{addon="opsnotes-postgres"}'))?.value, 20);
  const m = await herd.cli(["addons", "metrics", "opsnotes-postgres"]);
  assert.equal(m.code, 0, m.stderr);
  assert.match(m.stdout, /^up\s+1$/m);
  assert.match(m.stdout, /^max connections\s+20$/m);
  assert.match(m.stdout, /^db size \(bound databases\)\s+[\d.]+ (KiB|MiB)$/m);
  assert.match(m.stdout, /^connections\s+\d+$/m);

  // herd's own add-ons take no bind parameters: a 400 naming the field, nothing bound.
  const refused = await herd.api<{ details: { field: string }[] }>(
    "POST",
    "/addons/opsnotes-postgres/attach",
    {
      app: "opsnotes",
      parameters: { role: "reader" },
    },
  );
  assert.equal(refused.status, 400, JSON.stringify(refused.body));
  assert.equal(refused.body.details[0].field, "parameters");

  // Destroy: the final backup is recorded on its own and listed after the add-on is gone.
  const d = await herd.cli(["addons", "destroy", "opsnotes-postgres", "--confirm", "opsnotes-postgres"], {
    timeoutMs: 180_000,
  });
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const id = /final backup (\S+) /.exec(d.stdout)?.[1] as string;
  assert.ok(id, d.stdout);
  const listed = await herd.api<{ items: FinalAddonBackup[] }>("GET", "/addon-backups");
  const f = listed.body.items.find((b) => b.id === id);
  assert.equal(f?.addon, "opsnotes-postgres");
  assert.deepEqual(f?.databases, ["db_opsnotes"]);
  assert.deepEqual(f?.apps, ["opsnotes"]);
  const l = await herd.cli(["addons", "final-backups"]);
  assert.match(l.stdout, new RegExp(`${id}\\s+opsnotes-postgres\\s+postgres`));
  await waitFor(
    "the app without its database",
    async () => ((await herd.request(HOST, "/notes")).status === 503 ? true : undefined),
    180_000,
  );

  // A new add-on from it: restored before it is bound, so the app's first release with it reads the note.
  const again = await herd.cli(
    ["addons", "create", "postgres", "--app", "opsnotes", "--name", "opsnotes-db2", "--from-backup", id],
    { timeoutMs: 400_000 },
  );
  assert.equal(again.code, 0, again.stdout + again.stderr + herd.output().slice(-3000));
  const read = await waitFor(
    "the restored note through the new binding",
    async () => {
      const r = await herd.request(HOST, "/notes");
      return r.status === 200 && r.body === "kept" ? r : undefined;
    },
    240_000,
  );
  assert.equal(read.body, "kept");
  assert.equal(
    (await putNote(herd, "/notes?text=new", HOST)).body,
    "kept,new",
    "the app owns its restored tables",
  );
});

test("Redis: metrics in herd, no wildcard bind, final backup (RDB) restored into a new add-on", async () => {
  const { cli } = await ensureRedis();
  await deployCounter(herd, work, "opscounter", "opscounter.localhost", cli);
  const c = await herd.cli(["addons", "create", "redis", "--app", "opscounter", "--name", "opscache"], {
    timeoutMs: 240_000,
  });
  assert.equal(c.code, 0, c.stdout + c.stderr);
  const counted = await waitFor(
    "the counter counting in Redis",
    async () => {
      const r = await herd.request("opscounter.localhost", "/");
      return r.status === 200 ? Number(r.body) : undefined;
    },
    180_000,
  );
  for (let i = 0; i < 3; i++) {
    const r = await herd.request("opscounter.localhost", "/");
    assert.equal(r.status, 200, `a counted hit: ${r.body}`);
  }
  const hits = counted + 3;

  const up = await waitFor(
    "the Redis add-on's figures in herd",
    () => sample('redis_up{addon="opscache"} == 1'),
    180_000,
  );
  assert.equal(up.metric.tenant, "default");
  const mem = await sample('redis_memory_used_bytes{addon="opscache"}');
  assert.ok((mem?.value ?? 0) > 100_000, `used memory: ${mem?.value}`);
  await waitFor("the key counted", () => sample('redis_db_keys{addon="opscache",db="db0"} >= 1'), 60_000);
  assertNoWildcard("opscache", (await addonInfo("opscache")).endpoint);
  const m = await herd.cli(["addons", "metrics", "opscache"]);
  assert.equal(m.code, 0, m.stderr);
  assert.match(m.stdout, /^used memory\s+[\d.]+ (KiB|MiB)$/m);
  assert.match(m.stdout, /^max clients\s+20$/m);
  assert.match(m.stdout, /^keys\s+1$/m);

  const d = await herd.cli(["addons", "destroy", "opscache", "--confirm", "opscache"], {
    timeoutMs: 180_000,
  });
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const id = /final backup (\S+) /.exec(d.stdout)?.[1] as string;
  const f = (await herd.api<{ items: FinalAddonBackup[] }>("GET", "/addon-backups")).body.items.find(
    (b) => b.id === id,
  );
  assert.equal(f?.format, "rdb");
  assert.equal(f?.kind, "redis");
  const wrongKind = await herd.cli(["addons", "create", "postgres", "--name", "nope", "--from-backup", id]);
  assert.notEqual(wrongKind.code, 0);
  assert.match(wrongKind.stderr, /final backup \S+ is of a redis add-on, not postgres/);

  const again = await herd.cli(
    ["addons", "create", "redis", "--app", "opscounter", "--name", "opscache2", "--from-backup", id],
    { timeoutMs: 400_000 },
  );
  assert.equal(again.code, 0, again.stdout + again.stderr);
  const next = await waitFor(
    "the counter going on from the restored count",
    async () => {
      const r = await herd.request("opscounter.localhost", "/");
      return r.status === 200 ? Number(r.body) : undefined;
    },
    240_000,
  );
  assert.equal(next, hits + 1, "the restored server had the count");
});
