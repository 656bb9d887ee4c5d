import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;

/** Starts `herd gateway --workers N` (no control plane: it serves an empty table) until it prints its address. */
async function gateway(dataDir: string, workers: number) {
  const child = spawn(
    process.execPath,
    [
      MAIN,
      "gateway",
      "--server",
      "http://127.0.0.1:9",
      "--token",
      "t",
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      "--metrics-port",
      "off",
      "--data",
      dataDir,
      "--workers",
      String(workers),
    ],
    { stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no address within 60 s:\n${out}`)), 60_000);
    child.stdout.on("data", () => {
      if (/herd gateway: http/.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => reject(new Error(`exited with ${code}:\n${out}`)));
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    process.kill(-(child.pid as number), "SIGTERM");
    await exited;
  };
  return { child, output: () => out, stop };
}

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
const childrenOf = (pid: number) =>
  readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);

test("a daemon started from the command line re-executes itself once with its role's flags and the stripped-TypeScript hooks", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-runtime-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // The primary of several workers only follows the control plane: the quiet flags.
  const primary = await gateway(join(dir, "a"), 2);
  t.after(primary.stop);
  const pid = primary.child.pid as number;
  // Same process (execve keeps the pid and stdio): its command line now has the flag, its output reached us.
  assert.ok(cmdline(pid).includes("--max-semi-space-size=2"), cmdline(pid).join(" "));
  assert.match(primary.output(), /\(2 workers\)/);
  // The cache was filled; the workers are given its hooks, and V8's default young generation (they proxy).
  const cache = new URL("../../node_modules/.cache/herd-stripped", import.meta.url).pathname;
  assert.ok(readdirSync(cache).length > 0);
  const hooks = `--import=${new URL("./strip-hooks.mjs", import.meta.url).href}?cache=${encodeURIComponent(cache)}`;
  assert.ok(cmdline(pid).includes(hooks), cmdline(pid).join(" "));
  const workers = childrenOf(pid);
  assert.equal(workers.length, 2);
  for (const worker of workers) {
    assert.ok(cmdline(worker).includes(hooks), cmdline(worker).join(" "));
    assert.ok(!cmdline(worker).some((a) => a.startsWith("--max-semi-space-size")), cmdline(worker).join(" "));
  }
  await primary.stop();

  // A gateway that proxies keeps V8's defaults.
  const single = await gateway(join(dir, "b"), 1);
  t.after(single.stop);
  assert.ok(!cmdline(single.child.pid as number).some((a) => a.startsWith("--max-semi-space-size")));
  await single.stop();
});
