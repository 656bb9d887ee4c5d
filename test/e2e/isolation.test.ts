// Apps cannot reach the platform or each other: a deployed app of tenant "a"
// tries to read the admin token, state.db, an instance's files and
// environment of tenant "b", to kill that instance, and to connect to the API
// and to b's instance port. Each attempt must fail; the same app may still
// reach its own tenant's sibling and the gateway. Its build's install scripts
// reach no port of this machine at all. Needs root (and nftables for
// the network checks); without them each check says why it was skipped.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { ensureDebianPackages } from "../../scripts/ensure-tools.ts";
import { firewallTable } from "../../src/agent/firewall.ts";
import type { Instance, Node } from "../../src/model/objects.ts";
import { cleanupHerd, type Herd, ROOT, startHerd, waitFor } from "./harness.ts";
import { type ProbeResult, probePath, writeProber } from "./prober-app.ts";

const root = process.getuid?.() === 0;
const notRoot = root ? false : "needs root: instances run as the agent's user otherwise";

let herd: Herd | undefined;
const work = mkdtempSync(join(tmpdir(), "herd-isolation-"));

before(async () => {
  if (!root) return;
  // The network layer needs nft on the node; the agent only reports its absence, the test installs it.
  await ensureDebianPackages({ nft: "nftables" });
  // Not under /tmp: the sandbox's /tmp is private, so that would hide the data dir however its modes were.
  herd = await startHerd({ dataDir: mkdtempSync("/var/tmp/herd-isolation-") });
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

async function instances(app: string, tenant: string, h = herd!): Promise<Instance[]> {
  const { body } = await h.api<{ items: Instance[] }>("GET", `/apps/${app}/instances?tenant=${tenant}`);
  return body.items.filter((i) => i.state === "running" && i.pid !== undefined && i.port !== undefined);
}

/** Creates a tenant (the API refuses deploys into unknown ones). */
async function createTenant(h: Herd, name: string): Promise<void> {
  const r = await h.api("POST", "/tenants", { name });
  assert.ok(
    r.status === 201 || r.status === 409,
    `creating tenant ${name}: ${r.status} ${JSON.stringify(r.body)}`,
  );
}

/** Deploys the prober (2 instances) into tenant a. */
async function deployProber(h: Herd): Promise<void> {
  await createTenant(h, "a");
  const dir = join(work, "prober");
  writeProber(dir, { app: "prober", host: "prober.localhost", instances: 2 });
  const a = await h.cli(["deploy", "--tenant", "a", dir]);
  assert.equal(a.code, 0, a.stdout + a.stderr);
}

/** The tables nft lists now. */
function nftTables(): string {
  const list = spawnSync("nft", ["list", "tables"], { encoding: "utf8" });
  assert.equal(list.status, 0, list.stderr);
  return list.stdout;
}

let node: Node | undefined;
let target: Instance;
let probers: Instance[];
let result: ProbeResult;

test("the node reports its sandbox and firewall, and two tenants deploy", { skip: notRoot }, async (t) => {
  const h = herd!;
  const nodes = await h.api<{ items: Node[] }>("GET", "/nodes");
  node = nodes.body.items[0];
  assert.equal(node.isolation.sandbox, "uid", JSON.stringify(node.isolation));
  assert.equal(node.isolation.network, "nftables", JSON.stringify(node.isolation));
  const table = await h.cli(["nodes"]);
  assert.match(table.stdout, /sandbox uid, network nftables/);

  await createTenant(h, "b");
  const b = await h.cli(["deploy", "--tenant", "b", join(ROOT, "examples/hello")]);
  assert.equal(b.code, 0, b.stdout + b.stderr);
  await deployProber(h);
  target = (await waitFor("b's hello instances", async () => (await instances("hello", "b"))[0]))!;
  probers = await waitFor("both prober instances", async () => {
    const list = await instances("prober", "a");
    return list.length === 2 ? list : undefined;
  });

  // The gateway's metrics (every tenant's routes and traffic): the control plane names them to the
  // agent among the platform's endpoints (peers.platform); the probe runs once the agent has them.
  const gateways = await h.api<{ items: { metricsUrl?: string }[] }>("GET", "/gateways");
  const metricsUrl = gateways.body.items.find((g) => g.metricsUrl)?.metricsUrl;
  assert.ok(metricsUrl, `a gateway with metrics: ${JSON.stringify(gateways.body)}`);
  const metricsAt = new URL(metricsUrl).host;
  await waitFor(`the agent to close ${metricsAt}`, () => {
    const file = join(h.dataDir, "agent", "peers.json");
    return (
      existsSync(file) &&
      (JSON.parse(readFileSync(file, "utf8")) as { platform: string[] }).platform.includes(metricsAt)
    );
  });
  const spec = {
    read: {
      adminToken: join(h.dataDir, "admin-token"),
      stateDb: join(h.dataDir, "state.db"),
      otherInstanceFile: join(h.dataDir, "agent", "instances", target.id, "app", "server.js"),
      otherInstanceEnviron: `/proc/${target.pid}/environ`,
      platformEnviron: `/proc/${h.proc.pid}/environ`,
    },
    signal: target.pid,
    connect: {
      api: Number(new URL(h.url).port),
      otherTenant: target.port,
      gateway: Number(new URL(h.gatewayUrl).port),
      gatewayMetrics: Number(new URL(metricsUrl).port),
      ...Object.fromEntries(probers.map((p) => [p.id, p.port])),
    },
  };
  // The gateway has prober's route a moment after the deploy: asked until it answers (the probe only reads and connects).
  let last = "";
  const res = await waitFor("the prober through the gateway", async () => {
    const r = await h.request("prober.localhost", probePath(spec));
    last = `${r.status} ${r.body}`;
    return r.status === 200 ? r : undefined;
  }).catch((err: Error) => {
    throw new Error(`${err.message}: ${last}`);
  });
  result = JSON.parse(res.body) as ProbeResult;
  t.diagnostic(`probe: ${res.body}`);
});

test("an app runs as its tenant's own unprivileged uid", { skip: notRoot }, () => {
  assert.ok(result.uid >= 1_000_000_000, `uid ${result.uid}`);
});

test("it cannot read the admin token, state.db, nor another tenant's files", { skip: notRoot }, () => {
  // The data dir is 0700 root: nothing below it can be opened.
  for (const name of ["adminToken", "stateDb", "otherInstanceFile"]) {
    assert.equal(result.read[name], "EACCES", name);
  }
});

test("its app is mounted nosuid and nodev", { skip: notRoot }, () => {
  const options = result.cwdMount.options.split(",");
  assert.ok(
    options.includes("nosuid") && options.includes("nodev"),
    `${result.cwdMount.point}: ${result.cwdMount.options}`,
  );
});

test("it cannot see other processes' environment (hidepid /proc), nor signal them", {
  skip: notRoot,
}, async () => {
  assert.equal(result.read.otherInstanceEnviron, "ENOENT");
  assert.equal(result.read.platformEnviron, "ENOENT");
  assert.equal(result.signal, "EPERM");
  // The target lives on, same pid.
  const [still] = await instances("hello", "b");
  assert.equal(still?.pid, target.pid);
  assert.equal((await herd!.request("hello.localhost")).status, 200);
});

test("it cannot connect to the API, the gateway's metrics nor another tenant's port; its own tenant and the gateway it can", {
  skip: notRoot,
}, (t) => {
  if (node?.isolation.network !== "nftables") {
    t.skip(`no firewall on this node: ${node?.isolation.missing?.join("; ")}`);
    return;
  }
  assert.equal(result.connect.api, "ECONNREFUSED");
  assert.equal(result.connect.otherTenant, "ECONNREFUSED");
  assert.equal(result.connect.gatewayMetrics, "ECONNREFUSED", "the gateway's metrics");
  assert.equal(result.connect.gateway, "allowed");
  const sibling = probers.find((p) => p.id !== result.instance)!;
  assert.equal(result.connect[sibling.id], "allowed", "the same tenant's sibling");
});

test("its build's install scripts cannot connect to the API, the gateway, nor another tenant's port", {
  skip: notRoot,
}, async () => {
  const h = herd!;
  const dir = join(work, "build-prober");
  mkdirSync(join(dir, "vendor", "noop"), { recursive: true });
  const ports = {
    api: Number(new URL(h.url).port),
    otherTenant: target.port,
    gateway: Number(new URL(h.gatewayUrl).port),
  };
  // The install script of a local dependency's parent runs at build time, as npm's would anywhere.
  const probe = [
    "const net = require('net'); const out = {};",
    `const ports = ${JSON.stringify(ports)}; const names = Object.keys(ports); let left = names.length;`,
    "for (const name of names) { const s = net.connect(ports[name], '127.0.0.1');",
    "  const done = (r) => { if (out[name]) return; out[name] = r; s.destroy();",
    "    if (--left === 0) console.log('BUILD-PROBE ' + JSON.stringify(out)); };",
    "  s.on('connect', () => done('allowed')); s.on('error', (e) => done(e.code)); setTimeout(() => done('timeout'), 3000); }",
  ].join(" ");
  writeFileSync(
    join(dir, "server.js"),
    "require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT)",
  );
  writeFileSync(
    join(dir, "vendor", "noop", "package.json"),
    JSON.stringify({ name: "noop", version: "1.0.0" }),
  );
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({
      name: "build-prober",
      version: "1.0.0",
      dependencies: { noop: "file:vendor/noop" },
      scripts: { start: "node server.js", install: `node -e ${JSON.stringify(probe)}` },
    }),
  );
  const d = await h.cli(["deploy", "--tenant", "a", dir]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const line = /BUILD-PROBE (\{.*\})/.exec(d.stdout + d.stderr);
  assert.ok(line, `no probe line in the build log:\n${d.stdout}${d.stderr}`);
  const got = JSON.parse(line[1]) as Record<string, string>;
  assert.match(d.stdout + d.stderr, /isolation: sandbox uid, cgroups \S+, network nftables/);
  assert.deepEqual(got, { api: "ECONNREFUSED", otherTenant: "ECONNREFUSED", gateway: "ECONNREFUSED" });
  assert.ok(!/herd_build_/.test(nftTables()), "the build's firewall table is gone with the build");
});

test("two tenants' pets of one app and service name run side by side, each with a volume of its own; a destroyed app's volumes go, copies left on the node too", {
  skip: notRoot,
}, async () => {
  const h = herd!;
  const dir = join(work, "keeper");
  mkdirSync(dir, { recursive: true });
  // Writes who it is into its data dir on first start, and answers with what it finds there.
  writeFileSync(
    join(dir, "server.js"),
    [
      'const fs = require("node:fs");',
      'const file = require("node:path").join(process.env.HERD_DATA_DIR, "owner");',
      "if (!fs.existsSync(file)) fs.writeFileSync(file, process.env.HERD_INSTANCE);",
      'require("node:http").createServer((q, r) => r.end(fs.readFileSync(file))).listen(process.env.PORT);',
      "",
    ].join("\n"),
  );
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "keeper", private: true }));
  for (const tenant of ["a", "b"]) {
    await createTenant(h, tenant);
    // A host of each tenant's own: hosts are the gateway's, one tenant's each.
    writeFileSync(
      join(dir, "herd.yaml"),
      `app: keeper\nservices:\n  web:\n    command: node server.js\n    mode: pet\n    resources: { cpu: 0.1, memory: 64Mi }\n    routes: [{ host: keeper-${tenant}.localhost }]\n`,
    );
    const r = await h.cli(["deploy", "--tenant", tenant, dir]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  }
  const volume = (id: string) => join(h.dataDir, "agent", "volumes", id);
  const [pa] = await waitFor("a's pet", async () =>
    (await instances("keeper", "a")).length ? instances("keeper", "a") : undefined,
  );
  const [pb] = await waitFor("b's pet", async () =>
    (await instances("keeper", "b")).length ? instances("keeper", "b") : undefined,
  );
  assert.deepEqual([pa.id, pb.id], ["a.keeper-web-0", "b.keeper-web-0"]);
  await waitFor(
    "each pet wrote its own volume",
    async () => existsSync(join(volume(pa.id), "owner")) && existsSync(join(volume(pb.id), "owner")),
  );
  assert.equal(readFileSync(join(volume(pa.id), "owner"), "utf8"), pa.id);
  assert.equal(readFileSync(join(volume(pb.id), "owner"), "utf8"), pb.id);
  assert.notEqual(statSync(volume(pa.id)).uid, statSync(volume(pb.id)).uid, "each tenant's uid owns its own");

  const gone = await h.cli(["apps", "destroy", "keeper", "--tenant", "b", "--confirm", "keeper"]);
  assert.equal(gone.code, 0, gone.stdout + gone.stderr);
  await waitFor("b's keeper gone with its volume", async () => {
    const apps = await h.api<{ items: { name: string }[] }>("GET", "/apps?tenant=b");
    return !apps.body.items.some((a) => a.name === "keeper") && !existsSync(volume(pb.id));
  });
  assert.equal(readFileSync(join(volume(pa.id), "owner"), "utf8"), pa.id, "a's pet keeps its data");
  // Copies a pet left behind on this node (moved elsewhere, or scaled down): b's keeper was destroyed,
  // so its copy goes at the next heartbeat; a's keeper lives, so its copy stays until a's is destroyed;
  // an app herd never destroyed (as after a restore from an older backup) keeps its volume.
  for (const id of ["b.keeper-web-3", "a.keeper-web-3", "b.unknown-web-0"]) {
    mkdirSync(volume(id));
    writeFileSync(join(volume(id), "owner"), id);
  }
  await waitFor("the copy of b's destroyed keeper removed", () => !existsSync(volume("b.keeper-web-3")));
  assert.ok(existsSync(join(volume("a.keeper-web-3"), "owner")), "a live app's copy was removed");
  assert.ok(existsSync(join(volume("b.unknown-web-0"), "owner")), "an unknown app's volume was removed");
  rmSync(volume("b.unknown-web-0"), { recursive: true });
  const end = await h.cli(["apps", "destroy", "keeper", "--tenant", "a", "--confirm", "keeper"]);
  assert.equal(end.code, 0, end.stdout + end.stderr);
  await waitFor(
    "a's keeper's copy removed with its app",
    () => !existsSync(volume("a.keeper-web-3")) && !existsSync(volume(pa.id)),
  );
});

test("stopping herd removes its firewall table", { skip: notRoot }, async () => {
  const h = herd!;
  await h.stop();
  const table = firewallTable(resolve(h.dataDir, "agent", "driver"));
  assert.ok(!nftTables().includes(table));
});

test("with --keep-apps, apps stay sandboxed across herd restarts: adopted, same uid, the new API port closed", {
  skip: notRoot,
}, async (t) => {
  await cleanupHerd(herd);
  const dataDir = mkdtempSync("/var/tmp/herd-isolation-");
  herd = await startHerd({ dataDir, extraArgs: ["--keep-apps"] });
  await deployProber(herd);
  const before = await waitFor("both probers", async () => {
    const list = await instances("prober", "a");
    return list.length === 2 ? list : undefined;
  });
  const table = firewallTable(resolve(dataDir, "agent", "driver"));
  await herd.stop();
  // The apps run on without herd, and so do their rules.
  assert.ok(nftTables().includes(table), "the table went with herd while its apps run");

  herd = await startHerd({ dataDir, extraArgs: ["--keep-apps"] });
  const h = herd;
  const after = await waitFor("both probers adopted", async () => {
    const list = await instances("prober", "a");
    return list.length === 2 ? list : undefined;
  });
  assert.deepEqual(after.map((i) => i.pid).sort(), before.map((i) => i.pid).sort(), "adopted, not restarted");
  const spec = { read: {}, signal: 0, connect: { api: Number(new URL(h.url).port) } };
  const res = await waitFor("the prober through the gateway", async () => {
    const r = await h.request("prober.localhost", probePath(spec));
    return r.status === 200 ? r : undefined;
  });
  const r = JSON.parse(res.body) as ProbeResult;
  t.diagnostic(`probe after the restart: ${res.body}`);
  assert.ok(r.uid >= 1_000_000_000, `uid ${r.uid}`);
  assert.equal(r.connect.api, "ECONNREFUSED", "the restarted API's port is open to adopted apps");
});
