// Config versions pinned in a version set, on a real herd: an app serves the
// config value it reads from herd's config file; `herd set apply` with
// `config: 1` brings back config v1's value to the running instances (a
// config rollback, no redeploy), and `herd set diff` shows the change first.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { cleanupHerd, type Herd, startHerd, waitFor } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-set-config-"));
const app = join(work, "cfg");

before(async () => {
  herd = await startHerd();
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "cfg", private: true, type: "module" }));
  writeFileSync(
    join(app, "server.js"),
    [
      'import { createServer } from "node:http";',
      'import { readFileSync } from "node:fs";',
      "createServer((req, res) => {",
      "  let mode = 'none';",
      "  try { mode = JSON.parse(readFileSync(process.env.HERD_CONFIG_FILE, 'utf8')).values.MODE; } catch {}",
      "  res.end(String(mode));",
      "}).listen(Number(process.env.PORT));",
    ].join("\n"),
  );
  writeFileSync(
    join(app, "herd.yaml"),
    [
      "app: cfg",
      "services:",
      "  web:",
      "    command: node server.js",
      "    resources: { cpu: 0.05, memory: 32Mi }",
      "",
    ].join("\n"),
  );
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

test("a set pins an app's config version: apply brings v1's value back to the running instance", async () => {
  const deployed = await herd.cli(["deploy", app], { timeoutMs: 120_000 });
  assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);
  for (const mode of ["one", "two"]) {
    const set = await herd.cli(["config", "set", `MODE=${mode}`, "--app", "cfg"]);
    assert.equal(set.code, 0, set.stdout + set.stderr);
  }
  await waitFor(
    "config v2 to reach the instance",
    async () => (await herd.request("cfg.localhost")).body === "two",
  );

  writeFileSync(join(work, "herd.set.yaml"), "set: prod\napps:\n  cfg: { version: 1, config: 1 }\n");
  const diff = await herd.cli(["set", "diff"], { cwd: work });
  assert.equal(diff.code, 0, diff.stdout + diff.stderr);
  assert.match(diff.stdout, /cfg\s+v1\s+v1\s+unchanged\s+v2 → v1 \(changes\)/);
  const applied = await herd.cli(["set", "apply"], { cwd: work, timeoutMs: 120_000 });
  assert.equal(applied.code, 0, applied.stdout + applied.stderr);
  assert.match(applied.stdout, /cfg: runs v1 with config v1, healthy/);
  assert.match(applied.stdout, /set prod v1 applied/);
  await waitFor(
    "config v1's value to reach the instance",
    async () => (await herd.request("cfg.localhost")).body === "one",
  );
  // The app was not redeployed: still its first release.
  const releases = await herd.api<{ items: unknown[] }>("GET", "/apps/cfg/releases");
  assert.equal(releases.body.items.length, 1);
  const history = await herd.cli(["config", "history", "--app", "cfg"]);
  assert.match(history.stdout, /version set prod v1 pins config v1/);
});
