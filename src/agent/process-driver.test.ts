import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, type TestContext, test } from "node:test";
import { ensureDebianPackages } from "../common/debian-packages.ts";
import { detectCgroups, readMemoryLimit, removeHerdCgroups, START_IDLE_MS } from "./cgroups.ts";
import { get, harness, runDriverConformance, waitFor } from "./driver.case.test.ts";
import { INSTANCE_ERR_LOG, INSTANCE_LOG, type InstanceProcess } from "./driver.ts";
import { ProcessDriver } from "./process-driver.ts";
import { detectSandbox } from "./sandbox.ts";

runDriverConformance("process", (stateRoot) => new ProcessDriver({ stateRoot }));
// As root the default is sandboxed; the plain way (not root, or turned off) passes the same suite.
if (detectSandbox().enabled) {
  runDriverConformance(
    "process without sandbox",
    (stateRoot) => new ProcessDriver({ stateRoot, sandbox: false }),
  );
}

const support = detectCgroups();
const noCgroups = support.version === "none" ? `no cgroups here: ${support.reason}` : false;
// detectCgroups made herd's parents: gone again at the end, unless another test's instances are in them.
after(() => removeHerdCgroups(support));

test("isolation says what this machine gives and why not", (t) => {
  const stateRoot = mkdtempSync(join(tmpdir(), "herd-isolation-"));
  t.after(() => rmSync(stateRoot, { recursive: true, force: true }));
  const driver = new ProcessDriver({ stateRoot, cgroups: false, sandbox: false });
  assert.deepEqual(driver.isolation(), {
    cgroups: "none",
    reason: "cgroups turned off in the agent's options",
    sandbox: "none",
    network: "none",
    missing: [
      "sandbox: sandbox turned off in the agent's options",
      "network: instances run as the agent's user (no sandbox), so no uid to match",
    ],
  });
  const auto = new ProcessDriver({ stateRoot });
  assert.equal(auto.isolation().cgroups, support.version);
  if (process.getuid?.() !== 0) assert.equal(auto.isolation().reason, "not running as root");
});

test("an instance cgroup holds the requested memory limit and an allocation past it is killed", {
  skip: noCgroups,
}, async (t) => {
  const h = harness(t, (stateRoot) => new ProcessDriver({ stateRoot }));
  const driver = h.driver();
  const exits: InstanceProcess[] = [];
  driver.onExit((p) => exits.push(p));
  const memory = 128 * 1024 * 1024;
  // Touches 1 MiB at a time so the pages are really used; the cgroup must stop it long before 2 GiB.
  const hog = `"${process.execPath}" -e "const a = []; for (let i = 0; i < 2048; i++) a.push(Buffer.alloc(1 << 20, 1)); console.log('survived')"`;
  const spec = { ...(await h.spec("hog1", hog)), resources: { cpu: 0.5, memory } };
  await driver.start(spec);
  const dirs = support.parents.map((p) => join(p, "hog1"));
  // The limit is set before the command runs; the cgroup exists until the exit is handled.
  if (!exits[0]) assert.equal(readMemoryLimit({ version: support.version as "v1" | "v2", dirs }), memory);
  const exit = await waitFor(() => exits[0], "the hog to be killed", 30_000);
  // SIGKILL reaches either the command itself or, when the shell did not exec it, its child (sh then exits 128 + 9).
  assert.ok(
    exit.signal === "SIGKILL" || exit.exitCode === 137,
    `exit code ${exit.exitCode}, signal ${exit.signal}`,
  );
  // Whatever the main process saw, the driver says it was the OOM killer (the kernel counts it).
  assert.equal(exit.oomKilled, true);
  assert.ok(!(await driver.tail("hog1", 5)).includes("survived"));
  await waitFor(() => dirs.every((d) => !existsSync(d)) || undefined, "the cgroup to be removed");
});

test("the running process is in its cgroup and usage is measured", { skip: noCgroups }, async (t) => {
  const h = harness(t, (stateRoot) => new ProcessDriver({ stateRoot }));
  const driver = h.driver();
  const spec = await h.spec("inside1", `"${process.execPath}" server.cjs`);
  const started = await driver.start(spec);
  // The wrapper joins the cgroup as its first step, a moment after spawn returned.
  await waitFor(() => {
    const procs = readFileSync(join(support.parents[0], "inside1", "cgroup.procs"), "utf8").split("\n");
    return procs.includes(String(started.pid)) || undefined;
  }, `pid ${started.pid} in the cgroup`);
  // Right after it joins, the cgroup has charged only the first pages; Node soon uses megabytes.
  const usage = await waitFor(async () => {
    const u = await driver.usage("inside1");
    return u?.memoryBytes !== undefined && u.memoryBytes > 1024 * 1024 ? u : undefined;
  }, "usage over 1 MiB");
  assert.equal(typeof usage.cpuSeconds, "number");
});

test("usage says how long an instance waited for a CPU: two spinning on one CPU each wait about half", {
  skip: noCgroups,
}, async (t) => {
  const h = harness(t, (stateRoot) => new ProcessDriver({ stateRoot }));
  const driver = h.driver();
  const { taskset } = await ensureDebianPackages({ taskset: "util-linux" });
  const ids = ["spin1", "spin2"];
  for (const id of ids) {
    const spec = await h.spec(id, `${taskset} -c 0 "${process.execPath}" -e "for (;;) {}"`);
    await driver.start(spec);
  }
  // The first reading is where the window starts; the next one says what the threads did since.
  for (const id of ids) assert.equal((await driver.usage(id))?.cpuWaitShare, undefined, "no window yet");
  await new Promise((r) => setTimeout(r, 1000));
  for (const id of ids) {
    const share = (await driver.usage(id))?.cpuWaitShare;
    assert.ok(
      share !== undefined && share >= 0.3 && share <= 1,
      `${id} waited ${share} of its runnable time`,
    );
  }
});

test("releaseCgroups keeps herd's cgroups while an instance is in them, removes them once empty, and the next start makes them again", {
  skip: noCgroups,
}, async (t) => {
  const h = harness(t, (stateRoot) => new ProcessDriver({ stateRoot }));
  const driver = h.driver() as ProcessDriver;
  driver.shareCpu(1);
  const spec = await h.spec("release1", `"${process.execPath}" server.cjs`);
  await driver.start(spec);
  const held = await driver.releaseCgroups();
  assert.deepEqual(
    held?.removed.filter((d) => support.parents.includes(d)),
    [],
    "a parent holding an instance stays",
  );
  assert.ok(support.parents.every((p) => existsSync(p)));
  await driver.stop("release1", 5000);
  // Empty now, unless another test's instances are in them (then they stay: EBUSY).
  const released = await driver.releaseCgroups();
  t.diagnostic(
    `removed ${released?.removed.join(", ") || "none"}; kept ${released?.kept.join(", ") || "none"}`,
  );
  assert.deepEqual(
    [...(released?.removed ?? []), ...(released?.kept ?? [])]
      .filter((d) => support.parents.includes(d))
      .sort(),
    [...support.parents].sort(),
  );
  // The next start makes what is gone again, with the node's weight.
  await driver.start(spec);
  assert.ok(
    support.parents.every((p) => existsSync(p)),
    "the parents again",
  );
  assert.equal(await waitFor(() => get(spec.port), "the instance to answer"), "hello from release1\n");
  const cpuParent = support.parents.find((p) => existsSync(join(p, "cpu.shares")));
  if (cpuParent) assert.equal(readFileSync(join(cpuParent, "cpu.shares"), "utf8").trim(), "1024");
});

test("a start boost: a ceiling allows startCpu until started() sets the instance's own", {
  skip: noCgroups,
}, async (t) => {
  const h = harness(t, (stateRoot) => new ProcessDriver({ stateRoot }));
  const driver = h.driver();
  const spec = await h.spec("boosted1", `"${process.execPath}" server.cjs`);
  await driver.start({ ...spec, resources: { ...spec.resources, cpu: 0.1, cpuLimit: 0.25 }, startCpu: 1 });
  const file = support.version === "v2" ? "cpu.max" : "cpu.cfs_quota_us";
  const dir = support.parents.map((p) => join(p, "boosted1")).find((d) => existsSync(join(d, file)));
  assert.ok(dir, `a cgroup with ${file}`);
  const quota = () => Number(readFileSync(join(dir, file), "utf8").split(" ")[0]);
  assert.equal(quota(), 100_000, "one core while it starts");
  driver.started?.("boosted1", 0.25);
  assert.equal(quota(), 25_000, "its own quarter once started");
});

/** A critical instance's cgroup: its weight (cpu.weight or cpu.shares) and cpu.idle ("" where the kernel has none). */
async function startCritical(t: TestContext, id: string) {
  const h = harness(t, (stateRoot) => new ProcessDriver({ stateRoot }));
  const driver = h.driver();
  const spec = await h.spec(id, `"${process.execPath}" server.cjs`);
  await driver.start({ ...spec, resources: { ...spec.resources, cpu: 0.25 }, criticality: "critical" });
  const file = support.version === "v2" ? "cpu.weight" : "cpu.shares";
  const dir = support.parents.map((p) => join(p, id)).find((d) => existsSync(join(d, file)));
  assert.ok(dir, `a cgroup with ${file}`);
  const idleFile = join(dir, "cpu.idle");
  return {
    driver,
    weight: () => readFileSync(join(dir, file), "utf8").trim(),
    idle: () => (existsSync(idleFile) ? readFileSync(idleFile, "utf8").trim() : ""),
  };
}

test("a critical instance starts idle and gets the criticality's weight once started()", {
  skip: noCgroups,
}, async (t) => {
  const { driver, weight, idle } = await startCritical(t, "critical1");
  if (idle() !== "") assert.equal(idle(), "1", "idle while it starts: it serves nothing yet");
  driver.started?.("critical1", undefined);
  assert.equal(idle(), idle() === "" ? "" : "0");
  assert.equal(weight(), support.version === "v2" ? "1000" : "1024", "four times its request once it serves");
});

test("a critical instance not started within START_IDLE_MS gets its request's weight: a busy node cannot starve its start", {
  skip: noCgroups,
}, async (t) => {
  const { weight, idle } = await startCritical(t, "critical2");
  await new Promise((resolve) => setTimeout(resolve, START_IDLE_MS + 300));
  assert.equal(idle(), idle() === "" ? "" : "0");
  assert.equal(weight(), support.version === "v2" ? "250" : "256", "its request's weight while it starts");
});

test("without a ceiling the cgroup has a weight from the request and no quota", {
  skip: noCgroups,
}, async (t) => {
  const h = harness(t, (stateRoot) => new ProcessDriver({ stateRoot }));
  const driver = h.driver();
  const spec = await h.spec("weighted1", `"${process.execPath}" server.cjs`);
  await driver.start({ ...spec, resources: { ...spec.resources, cpu: 0.5 }, startCpu: 1 });
  const [weightFile, quotaFile] =
    support.version === "v2" ? ["cpu.weight", "cpu.max"] : ["cpu.shares", "cpu.cfs_quota_us"];
  const dir = support.parents.map((p) => join(p, "weighted1")).find((d) => existsSync(join(d, weightFile)));
  assert.ok(dir, `a cgroup with ${weightFile}`);
  assert.equal(readFileSync(join(dir, weightFile), "utf8").trim(), support.version === "v2" ? "500" : "512");
  const quota = readFileSync(join(dir, quotaFile), "utf8").trim();
  assert.ok(quota === "-1" || quota.startsWith("max"), `no ceiling (${quotaFile} ${quota})`);
});

test("usage without cgroups comes from /proc", async (t) => {
  const h = harness(t, (stateRoot) => new ProcessDriver({ stateRoot, cgroups: false }));
  const driver = h.driver();
  const spec = await h.spec("plain1", `"${process.execPath}" server.cjs`);
  await driver.start(spec);
  await waitFor(() => get(spec.port), "the server to answer");
  // Without a cgroup only the main process is measured (maybe the shell around the command).
  const usage = await driver.usage("plain1");
  assert.ok(usage?.memoryBytes && usage.memoryBytes > 0);
  assert.equal(typeof usage?.cpuSeconds, "number");
});

test("an exit it cannot record (the state dir gone) is still reported", async (t) => {
  const h = harness(t, (stateRoot) => new ProcessDriver({ stateRoot, cgroups: false }));
  const driver = h.driver();
  const exits: InstanceProcess[] = [];
  driver.onExit((p) => exits.push(p));
  const spec = await h.spec("norecord1", `exec "${process.execPath}" server.cjs`);
  const started = await driver.start(spec);
  await waitFor(() => get(spec.port), "the server to answer");
  const away = `${h.stateRoot}.away`;
  renameSync(h.stateRoot, away);
  let exit: InstanceProcess;
  try {
    process.kill(started.pid, "SIGKILL");
    exit = await waitFor(() => exits[0], "the exit to be reported");
  } finally {
    renameSync(away, h.stateRoot);
  }
  assert.equal(exit.signal, "SIGKILL");
  assert.equal((await driver.inspect("norecord1"))?.state, "exited");
});

test("a log past logMaxBytes is copied to .1 and truncated while the writer keeps appending", async (t) => {
  const h = harness(t, (stateRoot) => new ProcessDriver({ stateRoot, logMaxBytes: 4096 }));
  const driver = h.driver();
  const writer = `"${process.execPath}" -e "let i = 0; setInterval(() => { console.log('line ' + i + ' ' + 'x'.repeat(100)); console.error('err ' + i++ + ' ' + 'y'.repeat(100)); }, 5)"`;
  const spec = await h.spec("rotate1", writer);
  await driver.start(spec);
  const log = join(spec.stateDir, INSTANCE_LOG);
  await waitFor(() => existsSync(`${log}.1`) || undefined, "the rotated log", 15_000);
  assert.ok(statSync(`${log}.1`).size > 4096);
  // Appends after truncation start at the beginning again: no hole of NUL bytes.
  await waitFor(() => (statSync(log).size > 0 ? true : undefined), "new output");
  assert.ok(!readFileSync(log, "utf8").includes("\0"));
  // stderr has its own file, rotated the same way.
  const err = join(spec.stateDir, INSTANCE_ERR_LOG);
  await waitFor(() => existsSync(`${err}.1`) || undefined, "the rotated stderr log", 15_000);
  assert.ok(!readFileSync(`${log}.1`, "utf8").includes("err "));
  assert.match(readFileSync(`${err}.1`, "utf8"), /^err \d+ y+$/m);
  const tail = await driver.tail("rotate1", 4);
  assert.equal(tail.length, 4);
  assert.match(tail[1], /^line \d+ x+$/);
  assert.match(tail[3], /^err \d+ y+$/);
});

const sandbox = detectSandbox();
const noSandbox = sandbox.enabled ? false : `no sandbox here: ${sandbox.reason}`;

// Run inside an instance: tries what a hostile app would, prints one JSON line of outcomes.
const PROBE = `
const fs = require("node:fs");
const net = require("node:net");
const outcome = (fn) => { try { fn(); return "allowed"; } catch (err) { return err.code || String(err); } };
const connect = (port) => new Promise((resolve) => {
  const s = net.connect(Number(port), "127.0.0.1");
  s.on("connect", () => { s.destroy(); resolve("allowed"); });
  s.on("error", (err) => resolve(err.code));
  setTimeout(() => { s.destroy(); resolve("timeout"); }, 3000);
});
(async () => {
  const r = {
    uid: process.getuid(),
    cwd: process.cwd(),
    home: process.env.HOME,
    secret: outcome(() => fs.readFileSync(process.env.SECRET_FILE)),
    environ: outcome(() => fs.readFileSync("/proc/" + process.env.OTHER_PID + "/environ")),
    signal: outcome(() => process.kill(Number(process.env.OTHER_PID), "SIGTERM")),
    otherTenant: await connect(process.env.OTHER_PORT),
    sameTenant: await connect(process.env.SIBLING_PORT),
    platform: await connect(process.env.PLATFORM_PORT),
  };
  console.log(JSON.stringify(r));
})();
`;

test("a sandboxed instance runs as its tenant's uid and reaches nothing of the host or other tenants", {
  skip: noSandbox,
}, async (t) => {
  const h = harness(t, (stateRoot) => new ProcessDriver({ stateRoot }));
  const driver = h.driver() as ProcessDriver;
  const platform = createServer((s) => s.end());
  await new Promise<void>((resolve) => platform.listen(0, "127.0.0.1", resolve));
  t.after(() => platform.close());
  const platformPort = (platform.address() as AddressInfo).port;
  // Ports of the test come from the kernel's ephemeral range: the policy treats all of it as instance ports.
  driver.setNetworkPolicy({ ports: { min: 1024, max: 65535 }, protect: [{ port: platformPort }] });
  const secret = join(h.root, "admin-token");
  writeFileSync(secret, "s3cret", { mode: 0o600 });

  const other = { ...(await h.spec("other1", `"${process.execPath}" server.cjs`)), tenant: "b" };
  const sibling = { ...(await h.spec("sibling1", `"${process.execPath}" server.cjs`)), tenant: "a" };
  const otherP = await driver.start(other);
  await driver.start(sibling);
  await waitFor(() => get(other.port), "the other tenant's server");
  await waitFor(() => get(sibling.port), "the sibling's server");

  const probe = await h.spec("probe1", `"${process.execPath}" probe.cjs`, {
    SECRET_FILE: secret,
    OTHER_PID: String(otherP.pid),
    OTHER_PORT: String(other.port),
    SIBLING_PORT: String(sibling.port),
    PLATFORM_PORT: String(platformPort),
  });
  writeFileSync(join(probe.dir, "probe.cjs"), PROBE);
  await driver.start({ ...probe, tenant: "a", dataDir: join(h.root, "probe1", "data") });
  const line = await waitFor(
    async () => (await driver.tail("probe1", 5)).find((l) => l.startsWith("{")),
    "the probe",
  );
  const r = JSON.parse(line);
  const uidA = r.uid as number;
  assert.ok(uidA >= 1_000_000_000, `uid ${uidA}`);
  assert.equal(r.cwd, "/run/herd-sandbox/app");
  assert.equal(r.home, "/run/herd-sandbox/data");
  // Under /tmp here (private inside: ENOENT); in a data dir elsewhere, EACCES.
  assert.ok(["EACCES", "ENOENT"].includes(r.secret), `reading a root file: ${r.secret}`);
  assert.equal(r.environ, "ENOENT", "another tenant's process is visible in /proc");
  assert.equal(r.signal, "EPERM");
  assert.equal(r.sameTenant, "allowed");
  const network = driver.isolation().network === "nftables";
  await t.test(
    "the firewall refuses the other tenant's and the platform's ports",
    { skip: !network && `no firewall: ${driver.isolation().missing?.join("; ")}` },
    () => {
      assert.equal(r.otherTenant, "ECONNREFUSED");
      assert.equal(r.platform, "ECONNREFUSED");
    },
  );
  await t.test(
    "another node given by host name, which no rule can match, is named in isolation()",
    { skip: !network && "no firewall" },
    () => {
      const peers = {
        version: "v1",
        closed: true,
        nodes: [{ address: "node9.example", ports: { min: 20000, max: 29999 } }],
        tenants: {},
        platform: [],
      };
      driver.setNetworkPolicy({ ports: { min: 1024, max: 65535 }, protect: [{ port: platformPort }], peers });
      assert.match(
        driver.isolation().missing?.join("; ") ?? "",
        /other nodes or platform endpoints at a host name \(node9\.example\)/,
      );
      assert.equal(driver.isolation().network, "nftables", "the rest of the rules apply");
    },
  );
  assert.equal(await get(other.port), "hello from other1\n", "the other tenant's server was hurt");
  // Same tenant, same uid; the files it got are its own.
  assert.equal(statSync(probe.dir).uid, uidA);
  assert.equal(statSync(sibling.dir).uid, uidA);
  assert.notEqual(statSync(other.dir).uid, uidA);
});

test("an app's env never reaches the sandbox's root steps (its PATH or LD_PRELOAD would choose what root runs), and arrives whole", {
  skip: noSandbox,
}, async (t) => {
  const h = harness(t, (stateRoot) => new ProcessDriver({ stateRoot }));
  const driver = h.driver() as ProcessDriver;
  // The tools the root steps call by name, as an app could ship them first on its PATH: each
  // notes who ran it in a file only root can write, then does the real thing.
  const evil = join(h.root, "evil-bin");
  mkdirSync(evil, { mode: 0o755 });
  const marker = join(h.root, "ran-as-root");
  for (const tool of ["mount", "umount", "mkdir", "cat", "setpriv", "unshare"]) {
    writeFileSync(
      join(evil, tool),
      `#!/bin/sh\necho "${tool} $(id -u)" >> ${marker}\nexec /usr/bin/${tool} "$@"\n`,
      { mode: 0o755 },
    );
  }
  const tricky = `it's "quoted"\nwith $HOME, \`ticks\`, a \\ and 'more' ='`;
  const spec = await h.spec(
    "env1",
    `"${process.execPath}" -e 'console.log(JSON.stringify({uid: process.getuid(), path: process.env.PATH, tricky: process.env.TRICKY, preload: process.env.LD_PRELOAD}))'; sleep 30`,
    { PATH: `${evil}:/usr/bin:/bin`, TRICKY: tricky, LD_PRELOAD: join(h.root, "nope.so") },
  );
  await driver.start({ ...spec, tenant: "a", dataDir: join(h.root, "env1", "data") });
  const line = await waitFor(
    async () => (await driver.tail("env1", 5)).find((l) => l.startsWith("{")),
    "the app",
  );
  const seen = JSON.parse(line);
  assert.ok(seen.uid >= 1_000_000_000, `runs as the tenant's uid, not ${seen.uid}`);
  assert.equal(seen.tricky, tricky, "a value with quotes, newlines and $ arrives as it was");
  assert.equal(seen.path, `${evil}:/usr/bin:/bin`);
  assert.equal(seen.preload, join(h.root, "nope.so"));
  assert.equal(existsSync(marker) ? readFileSync(marker, "utf8") : "", "", "a root step ran the app's tool");
});
