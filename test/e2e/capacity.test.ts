// Capacity and deploys that explain themselves, through the real CLI:
// - a deploy whose health check fails shows each new outcome (status, the
//   start of the body, the app's last log lines) while it runs, not only at the end;
// - `herd capacity` and `herd nodes` agree with the instances running;
// - an adopted instance killed with -9 is not reported as "exited with code 0".

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { CapacityReport } from "../../src/api/capacity.ts";
import type { Instance } from "../../src/model/objects.ts";
import { cleanupHerd, type Herd, ROOT, startHerd, waitFor } from "./harness.ts";

const herds: Herd[] = [];
const work = mkdtempSync(join(tmpdir(), "herd-e2e-capacity-"));
// The CLI of these tests reads no login config of the machine's user (an empty config dir of our own).
process.env.XDG_CONFIG_HOME = join(work, "config");
after(async () => {
  // Newest first: a restarted herd shares its data dir with the one before it.
  for (const h of [...herds].reverse()) await cleanupHerd(h);
  rmSync(work, { recursive: true, force: true });
});

async function newHerd(dataDir?: string): Promise<Herd> {
  const herd = await startHerd(dataDir ? { dataDir } : {});
  herds.push(herd);
  return herd;
}

/** Runs `herd deploy DIR` and notes when each line of its output arrived. */
function deployTimed(
  herd: Herd,
  dir: string,
): Promise<{ code: number; lines: { at: number; text: string }[]; end: number }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--no-warnings", join(ROOT, "src/cli/main.ts"), "deploy", dir], {
      cwd: dir,
      env: { ...process.env, HERD_SERVER: herd.url, HERD_TOKEN: herd.token },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const lines: { at: number; text: string }[] = [];
    let partial = "";
    const take = (chunk: Buffer) => {
      const parts = (partial + chunk.toString("utf8")).split("\n");
      partial = parts.pop() ?? "";
      for (const text of parts) lines.push({ at: Date.now(), text });
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    const timer = setTimeout(() => child.kill("SIGKILL"), 180_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (partial) lines.push({ at: Date.now(), text: partial });
      resolve({ code: code ?? 1, lines, end: Date.now() });
    });
  });
}

test("a failing health check: each new outcome is in the deploy output while the deploy runs", async () => {
  const herd = await newHerd();
  const dir = join(work, "sickly");
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "herd.yaml"),
    "app: sickly\nservices:\n  web:\n    command: node server.js\n    instances: 1\n    health: { path: /healthz, startup: 3 }\n",
  );
  writeFileSync(
    join(dir, "server.js"),
    `const http = require("node:http");
console.log("connecting to the database at db.internal:5432");
http.createServer((req, res) => {
  res.statusCode = req.url === "/healthz" ? 503 : 200;
  res.end(req.url === "/healthz" ? "database not ready\\n" : "ok\\n");
}).listen(Number(process.env.PORT));
`,
  );
  const { code, lines, end } = await deployTimed(herd, dir);
  const text = lines.map((l) => l.text).join("\n");
  assert.notEqual(code, 0, text);
  // The first checks may find nothing listening yet; then the app answers 503.
  const answered = lines.findIndex((l) =>
    /web sickly-web-\w+: check \d+ failed: GET \/healthz answered 503: database not ready; its last log lines:$/.test(
      l.text,
    ),
  );
  assert.ok(answered >= 0, `a failing check with its status, body and log lines:\n${text}`);
  assert.match(lines[answered + 1]?.text ?? "", /connecting to the database at db\.internal:5432/);
  assert.match(
    text,
    /checks \d+–\d+ failed the same way \(\d+ in a row over [\d.]+ s\)/,
    "repeats summed up",
  );
  // The health lines came as it happened: the first long before the deploy ended (it waits 3 s + 5 s per try).
  const first = lines.find((l) => /^ {7}web sickly-web-\w+: check 1 failed: /.test(l.text));
  assert.ok(first, text);
  assert.ok(end - first.at > 3000, `the first check was shown ${end - first.at} ms before the end`);
  assert.ok(end - lines[answered].at > 3000, "and the answer's body too");
  const healthLines = lines.filter((l) => /^ {7}web sickly-web-/.test(l.text));
  assert.ok(healthLines.length < 40, `bounded: ${healthLines.length} lines\n${text}`);
});

test("herd capacity and herd nodes: requested, free and used agree with the running instances", async () => {
  const herd = await newHerd();
  const d = await herd.cli(["deploy", join(ROOT, "examples/hello")]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const running = (await herd.api<{ items: Instance[] }>("GET", "/apps/hello/instances")).body.items.filter(
    (i) => i.state === "running",
  );
  assert.equal(running.length, 2);
  const asked = running.reduce(
    (s, i) => ({ cpu: s.cpu + i.run.resources.cpu, memory: s.memory + i.run.resources.memory }),
    { cpu: 0, memory: 0 },
  );
  // CPU use is a rate: it needs two readings of the agent (every 5 s).
  const report = await waitFor(
    "measured CPU and memory use",
    async () => {
      const r = await herd.cli(["capacity", "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const parsed = JSON.parse(r.stdout) as CapacityReport;
      const n = parsed.nodes[0];
      return n.used.cpu !== undefined && n.used.memory !== undefined && parsed;
    },
    30_000,
  );
  assert.equal(report.nodes.length, 1);
  const [node] = report.nodes;
  assert.equal(node.instances, 2);
  assert.deepEqual(node.requested, asked);
  assert.deepEqual(node.free, {
    // CPU: what the scheduler fills is allocatable × the node's overcommit ratio.
    cpu: Math.round((node.allocatable.cpu * node.cpuOvercommit - asked.cpu) * 1000) / 1000,
    memory: node.allocatable.memory - asked.memory,
  });
  assert.ok(node.used.memory! > 1024 * 1024, `two node processes use some memory: ${node.used.memory}`);
  assert.ok(
    node.used.memory! < asked.memory * 2,
    `and not more than a little over their limits: ${node.used.memory}`,
  );
  assert.ok(node.used.cpu! >= 0 && node.used.cpu! < 2, `${node.used.cpu}`);
  assert.ok(
    node.machine?.memory && node.machine.memory >= node.used.memory!,
    "the machine uses at least as much",
  );
  const tenant = report.tenants.find((t) => t.name === "default");
  assert.equal(tenant?.instances, 2);
  assert.deepEqual(tenant?.requested, asked);
  assert.deepEqual(
    tenant?.nodes.map((s) => [s.node, s.instances]),
    [[node.name, 2]],
  );

  const table = await herd.cli(["capacity"]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^NODE\s+STATE\s+INSTANCES\s+CPU ALLOC\s+CPU REQ\s+CPU FREE\s+CPU USED/m);
  assert.match(
    table.stdout,
    new RegExp(
      `^${node.name}\\s+ready\\s+2\\s+${node.allocatable.cpu} ×${node.cpuOvercommit}\\s+0\\.5\\s`,
      "m",
    ),
  );
  assert.match(table.stdout, /^default\s+2\s+0\.5\s+\S+\s+256 MiB\s/m);
  const nodes = await herd.cli(["nodes"]);
  assert.equal(nodes.code, 0, nodes.stderr);
  assert.match(nodes.stdout, /INSTANCES\s+CPU USED\/FREE\/ALLOC\s+MEMORY USED\/FREE\/ALLOC/);
  assert.match(nodes.stdout, new RegExp(`\\s2\\s+[\\d.]+/${node.free.cpu}/${node.allocatable.cpu}\\s`));
});

test("an adopted instance killed with -9 is not reported as exited with code 0", async () => {
  const first = await newHerd();
  const d = await first.cli(["deploy", join(ROOT, "examples/hello")]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  await first.kill9();
  const second = await newHerd(first.dataDir);
  const [victim] = await waitFor("the instances adopted and running", async () => {
    const items = (await second.api<{ items: Instance[] }>("GET", "/apps/hello/instances")).body.items;
    return items.filter((i) => i.state === "running").length === 2 && items;
  });
  process.kill(victim.pid!, "SIGKILL");
  const exited = await waitFor("the exit reported", async () => {
    const events = (
      await second.api<{ items: { instance?: string; reason: string; message: string }[] }>(
        "GET",
        "/events?app=hello&limit=500",
      )
    ).body.items;
    return events.find((e) => e.instance === victim.id && e.reason === "Exited");
  });
  assert.doesNotMatch(exited.message, /code 0/);
  assert.match(exited.message, /exit status unknown \(adopted/);
});
