// The CLI from anywhere, end to end: herd up signs it in (the context local), so
// commands run in any directory with no HERD_SERVER/HERD_TOKEN find the server;
// in an app's directory --app defaults to that app; a --instance that names
// nothing is an error; Ctrl-C says what it stops, and stops it.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Instance } from "../../src/model/objects.ts";
import { cleanupHerd, type Herd, ROOT, runCli, startHerd, waitFor } from "./harness.ts";

let herd: Herd;
let xdg: string;
const elsewhere = mkdtempSync(join(tmpdir(), "herd-cli-e2e-"));

before(async () => {
  herd = await startHerd();
  xdg = join(herd.dataDir, "cli-config");
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(elsewhere, { recursive: true, force: true });
});

/** The CLI as a person runs it: no HERD_* settings, only the user config herd up wrote. */
const herdCli = (args: string[], cwd = elsewhere) =>
  runCli(args, {
    cwd,
    env: {
      XDG_CONFIG_HOME: xdg,
      HERD_SERVER: "",
      HERD_TOKEN: "",
      HERD_DATA: "",
      HERD_CONTEXT: "",
      HERD_CA: "",
    },
  });

test("herd up signs the CLI in: deploy and ps from any directory, --app from the app's directory", async () => {
  const file = join(xdg, "herd", "config.json");
  assert.match(herd.output(), new RegExp(`CLI: +signed in as admin \\(context local in ${file}\\)`));
  const saved = JSON.parse(readFileSync(file, "utf8"));
  assert.equal(saved.current, "local");
  assert.equal(saved.contexts.local.server, herd.url);
  assert.equal(saved.contexts.local.token, herd.token);

  const deploy = await herdCli(["deploy", join(ROOT, "examples/hello")]);
  assert.equal(deploy.code, 0, deploy.stdout + deploy.stderr);
  // In examples/hello (its herd.yaml names the app hello) no --app is needed.
  const ps = await herdCli(["ps", "--json"], join(ROOT, "examples/hello"));
  assert.equal(ps.code, 0, ps.stderr);
  const instances = (JSON.parse(ps.stdout) as { items: Instance[] }).items;
  assert.equal(instances.length, 2);

  const nope = await herdCli(["logs", "--app", "hello", "--instance", "nope"]);
  assert.equal(nope.code, 1);
  assert.equal(
    nope.stderr,
    `herd: no instance nope in app hello (nor log lines from one); the instances: ${instances.map((i) => `${i.id} (web)`).join(", ")}\n`,
  );
});

test("Ctrl-C: herd up says it stops the apps' instances, and they are stopped", async () => {
  const { body } = await herd.api<{ items: Instance[] }>("GET", "/apps/hello/instances");
  const ports = body.items.map((i) => i.port).filter((p): p is number => typeof p === "number");
  assert.equal(ports.length, 2);
  herd.proc.kill("SIGINT");
  await waitFor(
    "herd up to exit",
    () => herd.proc.exitCode !== null || herd.proc.signalCode !== null,
    60_000,
  );
  assert.equal(herd.proc.exitCode, 0, herd.output());
  const out = herd.output();
  assert.match(out, /SIGINT: stopping herd: the gateway, the agent, the apps' instances, the API\n/);
  assert.match(out, /herd stopped 2 app instances; the next herd up starts them again\n/);
  assert.doesNotMatch(out, /keep running/);
  for (const port of ports) assert.equal(await listening(port), false, `port ${port} still answers`);
});

/** Whether something accepts connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
