/**
 * The conformance suite every RuntimeDriver passes. It registers nothing when
 * imported; a driver's own test file calls runDriverConformance with a factory.
 * Everything runs for real: node servers on free ports, real signals.
 */

import assert from "node:assert/strict";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, type TestContext, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "../common/free-port.ts";
import {
  INSTANCE_ERR_LOG,
  INSTANCE_LOG,
  type InstanceProcess,
  type RuntimeDriver,
  type StartSpec,
} from "./driver.ts";

export { freePort };

/**
 * A node HTTP server that prints a line per request and can leave a grandchild behind that ignores SIGTERM.
 * It listens on every interface, as an app in a network namespace of its own must (the docker driver
 * publishes its port; the test reaches it on 127.0.0.1).
 */
const SERVER_SCRIPT = `
const http = require("node:http");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
if (process.env.GRANDCHILD_PID_FILE) {
  const g = spawn(process.execPath, ["-e", "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"], { stdio: "ignore" });
  fs.writeFileSync(process.env.GRANDCHILD_PID_FILE, String(g.pid));
}
http.createServer((req, res) => {
  console.log("request " + req.url);
  res.end("hello from " + process.env.HERD_INSTANCE + "\\n");
}).listen(Number(process.env.PORT), () => console.log("listening on " + process.env.PORT));
`;

/** Runs the shared RuntimeDriver suite; `create` makes a driver that keeps its bookkeeping in stateRoot. */
export function runDriverConformance(name: string, create: (stateRoot: string) => RuntimeDriver): void {
  describe(`RuntimeDriver conformance: ${name}`, () => {
    test("runs a server: inspect, tail, stop takes the whole group and does not report an exit", async (t) => {
      const h = harness(t, create);
      const driver = h.driver();
      const exits: InstanceProcess[] = [];
      driver.onExit((p) => exits.push(p));
      // Relative to its working directory: a sandboxed instance sees nothing else of the host's paths.
      const spec = await h.spec("srv1", `"${process.execPath}" server.cjs`, {
        GRANDCHILD_PID_FILE: "grandchild.pid",
      });
      const grandchildFile = join(spec.dir, "grandchild.pid");
      const started = await driver.start(spec);
      assert.equal(started.state, "running");
      assert.equal(started.port, spec.port);

      const body = await waitFor(() => get(spec.port), "the server to answer");
      assert.equal(body, "hello from srv1\n");
      const inspected = await driver.inspect("srv1");
      assert.equal(inspected?.state, "running");
      assert.equal(inspected?.pid, started.pid);
      assert.deepEqual(
        (await driver.list()).map((p) => p.id),
        ["srv1"],
      );
      const lines = await waitFor(async () => {
        const tail = await driver.tail("srv1", 10);
        return tail.includes("request /") ? tail : undefined;
      }, "the request line in the log");
      assert.ok(lines.includes(`listening on ${spec.port}`), lines.join("\n"));

      // The pid as the instance saw it; in a pid namespace of its own that is not the host's.
      const seen = Number(await waitFor(() => readIfPresent(grandchildFile), "the grandchild pid"));
      const grandchild = await waitFor(() => hostPid(seen, started.pid), "the grandchild's host pid");
      assert.ok(processAlive(grandchild));
      await driver.stop("srv1", 500);
      assert.ok(!processAlive(started.pid), "main process still alive after stop");
      await waitFor(() => !processAlive(grandchild) || undefined, "the grandchild to be gone");
      assert.equal((await driver.inspect("srv1"))?.state, "stopped", "ended by stop(), not by itself");
      await sleep(300);
      assert.deepEqual(exits, [], "onExit fired for a stopped instance");
      await driver.stop("srv1", 500);
      await driver.remove("srv1");
      assert.equal(await driver.inspect("srv1"), undefined);
    });

    test("reports a crash with its exit code and last output", async (t) => {
      const h = harness(t, create);
      const driver = h.driver();
      const exits: InstanceProcess[] = [];
      driver.onExit((p) => exits.push(p));
      const spec = await h.spec(
        "crash1",
        `"${process.execPath}" -e "console.log('about to fail'); setTimeout(() => process.exit(3), 300)"`,
      );
      await driver.start(spec);
      const exit = await waitFor(() => exits[0], "onExit");
      assert.equal(exit.id, "crash1");
      assert.equal(exit.state, "exited");
      assert.equal(exit.exitCode, 3);
      assert.equal(exit.oomKilled, undefined, "an ordinary crash is not an OOM kill");
      assert.equal((await driver.inspect("crash1"))?.exitCode, 3);
      assert.deepEqual(await driver.tail("crash1", 5), ["about to fail"]);
      await sleep(100);
      assert.equal(exits.length, 1, "onExit fired more than once");
    });

    test("reports a command that exits at once", async (t) => {
      const h = harness(t, create);
      const driver = h.driver();
      const exits: InstanceProcess[] = [];
      driver.onExit((p) => exits.push(p));
      await driver.start(await h.spec("quick1", "echo bye; exit 7"));
      const exit = await waitFor(() => exits[0], "onExit");
      assert.equal(exit.exitCode, 7);
      assert.deepEqual(await driver.tail("quick1", 5), ["bye"]);
    });

    test("keeps stdout and stderr apart, in their two files", async (t) => {
      const h = harness(t, create);
      const driver = h.driver();
      const exits: InstanceProcess[] = [];
      driver.onExit((p) => exits.push(p));
      const spec = await h.spec("streams1", "echo out1; echo err1 >&2; echo out2; echo err2 1>&2; exit 1");
      await driver.start(spec);
      await waitFor(() => exits[0], "onExit");
      assert.equal(readFileSync(join(spec.stateDir, INSTANCE_LOG), "utf8"), "out1\nout2\n");
      assert.equal(readFileSync(join(spec.stateDir, INSTANCE_ERR_LOG), "utf8"), "err1\nerr2\n");
      // stdout's last lines, then stderr's; each keeps half the room.
      assert.deepEqual(await driver.tail("streams1", 10), ["out1", "out2", "err1", "err2"]);
      assert.deepEqual(await driver.tail("streams1", 2), ["out2", "err2"]);
    });

    test("rejects a start in a directory that does not exist and leaves nothing behind", async (t) => {
      const h = harness(t, create);
      const driver = h.driver();
      const spec = await h.spec("bad1", "true");
      await assert.rejects(driver.start({ ...spec, dir: join(h.root, "missing") }));
      assert.equal(await driver.inspect("bad1"), undefined);
    });

    test("a new driver on the same state root adopts a live instance and notices its death", async (t) => {
      const h = harness(t, create);
      const first = h.driver();
      const spec = await h.spec("adopt1", `"${process.execPath}" server.cjs`);
      const started = await first.start(spec);
      await waitFor(() => get(spec.port), "the server to answer");
      // The first driver stands for an agent that went away.
      first.close?.();

      const second = h.driver();
      const exits: InstanceProcess[] = [];
      second.onExit((p) => exits.push(p));
      const found = await second.recover();
      assert.equal(found.length, 1);
      assert.equal(found[0].id, "adopt1");
      assert.equal(found[0].state, "running");
      assert.equal(found[0].pid, started.pid);
      assert.equal(found[0].port, spec.port);
      assert.equal(found[0].generation, spec.generation);
      assert.equal(await get(spec.port), "hello from adopt1\n");
      // Recovering twice adopts nothing new.
      assert.equal((await second.recover()).length, 1);

      process.kill(started.pid, "SIGKILL");
      const exit = await waitFor(() => exits[0], "onExit of the adopted instance");
      assert.equal(exit.id, "adopt1");
      assert.equal(exit.state, "exited");
      assert.equal((await second.inspect("adopt1"))?.state, "exited");
    });

    test("recover reports an instance that died while no driver watched as exited", async (t) => {
      const h = harness(t, create);
      const first = h.driver();
      const spec = await h.spec("dead1", `"${process.execPath}" server.cjs`);
      const started = await first.start(spec);
      await waitFor(() => get(spec.port), "the server to answer");
      first.close?.();
      process.kill(started.pid, "SIGKILL");
      await waitFor(() => !processAlive(started.pid) || undefined, "the process to die");

      const second = h.driver();
      const found = await second.recover();
      assert.equal(found.length, 1);
      assert.equal(found[0].state, "exited");
    });
  });
}

/** Temp dirs and drivers for one test, cleaned up when it ends however it ends. */
export interface DriverHarness {
  root: string;
  stateRoot: string;
  /** A new driver on the shared state root. */
  driver(): RuntimeDriver;
  /** A StartSpec for id on a free port, with server.cjs in its directory. */
  spec(id: string, command: string, env?: Record<string, string>): Promise<StartSpec>;
}

/** Sets up a harness whose t.after stops and removes every instance found in its state root. */
export function harness(t: TestContext, create: (stateRoot: string) => RuntimeDriver): DriverHarness {
  const root = mkdtempSync(join(tmpdir(), "herd-driver-"));
  const stateRoot = join(root, "state");
  const drivers: RuntimeDriver[] = [];
  t.after(async () => {
    for (const d of drivers) d.close?.();
    // A fresh driver finds everything any of them left, whichever of them is closed.
    const cleaner = create(stateRoot);
    try {
      for (const p of await cleaner.recover()) {
        await cleaner.stop(p.id, 0);
        await cleaner.remove(p.id);
      }
    } finally {
      cleaner.close?.();
      rmSync(root, { recursive: true, force: true });
    }
  });
  return {
    root,
    stateRoot,
    driver() {
      const d = create(stateRoot);
      drivers.push(d);
      return d;
    },
    async spec(id, command, env = {}) {
      const dir = join(root, id, "app");
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "server.cjs"), SERVER_SCRIPT);
      const port = await freePort();
      return {
        id,
        generation: 1,
        dir,
        stateDir: join(root, id, "state"),
        command,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PORT: String(port), HERD_INSTANCE: id, ...env },
        port,
        resources: { cpu: 0.5, memory: 256 * 1024 * 1024 },
      };
    },
  };
}

/** Polls fn until it returns something other than undefined; fails after timeoutMs. */
export async function waitFor<T>(
  fn: () => T | undefined | Promise<T | undefined>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ""}`);
    await sleep(50);
  }
}

/** The body of GET http://127.0.0.1:port/. */
export async function get(port: number, path = "/"): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(2000) });
  return res.text();
}

/** Whether pid is a live process (zombies waiting to be reaped count as gone). */
export function processAlive(pid: number): boolean {
  const stat = readIfPresent(`/proc/${pid}/stat`);
  if (!stat) return false;
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

/** The host's pid of the process that `member`'s pid namespace calls `nsPid` (the same number without a namespace of its own). */
export function hostPid(nsPid: number, member: number): number | undefined {
  const ns = readlinkSync(`/proc/${member}/ns/pid`);
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/pid`) !== ns) continue;
      const ids = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${entry}/status`, "utf8"))?.[1].split(/\s+/);
      if (Number(ids?.at(-1)) === nsPid) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

function readIfPresent(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8") || undefined;
  } catch {
    return undefined;
  }
}
