// Secrets end to end through `herd up`: a deploy that refers to a missing
// secret fails naming it; `herd secrets set` (value on stdin) and a deploy
// give the app its value in its env, while no file of the data dir (state.db,
// logs, instance.json, caches…), no API answer, snapshot or event holds it; a
// new value rolls out; a key rotation keeps everything working.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Instance } from "../../src/model/objects.ts";
import { cleanupHerd, type Herd, ROOT, served, startHerd, waitFor } from "./harness.ts";

let herd: Herd;
const herds: Herd[] = [];
const work = mkdtempSync(join(tmpdir(), "herd-secrets-e2e-"));
const appDir = join(work, "vault");
const FIRST = `first-${createHash("sha256").update(String(Math.random())).digest("hex").slice(0, 24)}`;
const SECOND = `second-${createHash("sha256").update(String(Math.random())).digest("hex").slice(0, 24)}`;
const sha = (s: string) => createHash("sha256").update(s).digest("hex");

before(async () => {
  herd = await startHerd();
  herds.push(herd);
  mkdirSync(appDir);
  writeFileSync(
    join(appDir, "herd.yaml"),
    `app: vault
services:
  web:
    command: node server.js
    instances: 1
    health: { path: /healthz }
    env: { GREETING: plain, DB_PASSWORD: { secret: db-password } }
`,
  );
  writeFileSync(join(appDir, "package.json"), `{"name":"vault","version":"1.0.0","type":"module"}\n`);
  // The app proves it has the value without printing it: it answers the value's sha256.
  writeFileSync(
    join(appDir, "server.js"),
    `import { createHash } from "node:crypto";
import { createServer } from "node:http";
createServer((req, res) => {
  if (req.url === "/healthz") return res.end("ok");
  res.end(createHash("sha256").update(process.env.DB_PASSWORD ?? "(none)").digest("hex"));
}).listen(Number(process.env.PORT), () => console.log("vault listening"));
`,
  );
});
after(async () => {
  for (const h of herds) await cleanupHerd(h, { keepDir: true });
  rmSync(herd.dataDir, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

/** `herd …` with `input` on stdin, as `printf %s "$PW" | herd secrets set …` would run. */
function herdWithStdin(
  args: string[],
  input: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--no-warnings", join(ROOT, "src/cli/main.ts"), ...args], {
      cwd: appDir,
      env: { ...process.env, HERD_SERVER: herd.url, HERD_TOKEN: herd.token },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(input);
  });
}

/** Every file under dir whose bytes contain `needle` (the whole data dir: databases, WAL, logs, caches). */
function filesContaining(dir: string, needle: string): string[] {
  const found: string[] = [];
  const bytes = Buffer.from(needle);
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && statSync(p).size < 512 * 1024 * 1024 && readFileSync(p).includes(bytes))
        found.push(p);
    }
  };
  walk(dir);
  return found;
}

const runningPid = async (release: number): Promise<number | undefined> => {
  const { body } = await herd.api<{ items: Instance[] }>("GET", "/apps/vault/instances");
  return body.items.find((i) => i.state === "running" && i.release === release && i.desired === "running")
    ?.pid;
};

test("a deploy whose env refers to a secret that is not set fails, naming the variable and the secret", async () => {
  const r = await herd.cli(["deploy", appDir], { cwd: appDir });
  assert.notEqual(r.code, 0);
  assert.match(
    r.stdout + r.stderr,
    /services\.web\.env\.DB_PASSWORD: secret db-password is not set for app vault/,
  );
  // As soon as the services are known: nothing is installed or packed for a release that would be refused.
  assert.doesNotMatch(r.stdout + r.stderr, /Compressing slug|Slug \S+ ready|dependencies/);
  assert.match(r.stdout, /herd\.yaml found/);
});

test("set on stdin + deploy: the app has the value in its env, and it is nowhere else", async () => {
  const set = await herdWithStdin(["secrets", "set", "db-password"], `${FIRST}\n`);
  assert.equal(set.code, 0, set.stdout + set.stderr);
  assert.match(set.stdout, /version 1/);
  const r = await herd.cli(["deploy", appDir], { cwd: appDir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  // Any digest once the gateway has the route (a moment after the deploy); then it must be the value's.
  const digest = await served(herd, "vault.localhost", /^[0-9a-f]{64}$/);
  assert.equal(digest, sha(FIRST), "the app's env has the value (stdin's trailing newline dropped)");
  const pid = await waitFor("the running instance's pid", () => runningPid(1));
  assert.ok(readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").includes(`DB_PASSWORD=${FIRST}`));

  for (const path of [
    "/apps/vault",
    "/apps/vault/releases",
    "/apps/vault/instances",
    "/apps/vault/secrets",
    "/events?limit=2000",
    "/snapshot",
    "/apps/vault/logs?tail=10000",
  ]) {
    const { status, body } = await herd.api("GET", path);
    assert.equal(status, 200, path);
    assert.ok(!JSON.stringify(body).includes(FIRST), `${path} does not show the value`);
  }
  const instanceJson = filesContaining(herd.dataDir, "db-password").filter((f) =>
    f.endsWith("instance.json"),
  );
  assert.ok(instanceJson.length > 0, "instance.json names the secret");
  assert.deepEqual(filesContaining(herd.dataDir, FIRST), [], "no file of the data dir holds the value");
});

test("a new value makes a release that rolls out; a key rotation keeps it working", async () => {
  const set = await herdWithStdin(["secrets", "set", "db-password", "--app", "vault"], SECOND);
  assert.equal(set.code, 0, set.stdout + set.stderr);
  assert.match(set.stdout, /v2 rolls out/);
  await waitFor(
    "v2 serving the new value",
    async () => (await herd.request("vault.localhost")).body === sha(SECOND),
  );
  const releases = await herd.cli(["releases", "--app", "vault", "--json"]);
  const items = JSON.parse(releases.stdout).items as { version: number; secrets?: Record<string, number> }[];
  assert.deepEqual(items[0]?.secrets, { "db-password": 2 });

  const rotated = await herd.cli(["secrets", "rotate-key"]);
  assert.equal(rotated.code, 0, rotated.stderr);
  assert.match(rotated.stdout, /1 old key removed/);
  const keys = JSON.parse(readFileSync(join(herd.dataDir, "secrets.key"), "utf8")).keys;
  assert.equal(Object.keys(keys).length, 1);
  assert.equal(statSync(join(herd.dataDir, "secrets.key")).mode & 0o777, 0o600);

  // A crash of the new instance: its replacement gets the value through the rotated key.
  const pid = await waitFor("v2's pid", () => runningPid(2));
  process.kill(pid, "SIGKILL");
  await waitFor("a replacement serving the value", async () => {
    const next = await runningPid(2);
    return next !== undefined && next !== pid && (await herd.request("vault.localhost")).body === sha(SECOND);
  });
  assert.deepEqual(filesContaining(herd.dataDir, SECOND), []);
  assert.deepEqual(filesContaining(herd.dataDir, FIRST), []);
});

test("kill -9 of herd up: the adopted app keeps its env; a replacement after the restart gets the value", async () => {
  const before = await waitFor("v2's pid", () => runningPid(2));
  await herd.kill9();
  herd = await startHerd({ dataDir: herd.dataDir });
  herds.push(herd);
  assert.equal((await herd.request("vault.localhost")).body, sha(SECOND), "the adopted process still has it");
  assert.equal(await waitFor("v2 running again", () => runningPid(2)), before, "adopted, not restarted");
  process.kill(before, "SIGKILL");
  await waitFor("a replacement serving the value", async () => {
    const next = await runningPid(2);
    return (
      next !== undefined && next !== before && (await herd.request("vault.localhost")).body === sha(SECOND)
    );
  });
  assert.deepEqual(filesContaining(herd.dataDir, SECOND), []);
});
