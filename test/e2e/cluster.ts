/**
 * A many-machine herd for end-to-end tests: a control plane (`herd server`)
 * and a gateway on the host, and N agents, each in its own network namespace.
 *
 *   host:  herd server (bridge address :port) · herd gateway (127.0.0.1:port) · the CLI
 *            │ bridge herdt<id>, 10.a.b.1/24
 *            ├── veth ── netns herdt-<id>-1: herd agent --address 10.a.b.11 → its instances
 *            ├── veth ── netns herdt-<id>-2: herd agent --address 10.a.b.12 → …
 *            └── veth ── netns herdt-<id>-3: …
 *
 * The gateway reaches instances over the bridge, as it would reach other
 * machines. No component holds the admin token: the gateway gets a gateway
 * credential and the agents join with one join token (one use each), keeping
 * their node credentials in their data dirs. With `tls` the API serves HTTPS
 * and everything (agents, gateway, CLI, `api`) verifies it with its CA. Agents join their namespace with `nsenter --net` (only the network
 * namespace: `ip netns exec` also remounts /sys, which hides the cgroup tree).
 * Without root (or without netns support) every agent runs on loopback with
 * its own data dir and ports, and `partitioned` is false: tests that cut a
 * link skip, saying so.
 *
 * Everything created is recorded and removed by `stop()`: agents, their
 * instances' process groups and cgroups, server, gateway, namespaces, veths,
 * the bridge and temp dirs. Only processes this module started are killed.
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { caDispatcher, trusting } from "../../src/common/api-ca.ts";
import type { Instance } from "../../src/model/objects.ts";
import { gatewayRequest, grace, killRecordedInstances, ROOT, runCli, sleep, waitFor } from "./harness.ts";
import { CONNECTOR } from "./prober-app.ts";

const NODE = process.execPath;
const MAIN = join(ROOT, "src/cli/main.ts");

export interface AgentSpec {
  /** Extra agent flags, e.g. ["--label", "disk=ssd"]. */
  args?: string[];
}

export interface ClusterNode {
  name: string;
  /** Where its instances are reached (its namespace's address, or 127.0.0.1). */
  address: string;
  /** Its network namespace; undefined on loopback. */
  netns: string | undefined;
  dataDir: string;
  /** Whether its agent process runs. */
  running(): boolean;
  /**
   * Starts (or restarts) its agent; `args` replace the flags it was given.
   * Resolves once its output matches `until`: by default once it joined (the control plane answered it).
   */
  start(args?: string[], until?: RegExp): Promise<void>;
  /** SIGTERM to the agent (its instances keep running, as `herd agent` promises). */
  stop(): Promise<void>;
  /** The machine dies: kill -9 of the agent and every process of its instances. */
  kill9(instancePids: number[]): Promise<void>;
  /** Cuts its link to the bridge (packets are dropped silently, as by a failed switch port). */
  cut(): void;
  restore(): void;
  /**
   * Instance ids of `app` with a live process on this machine (read from /proc). Needs network
   * namespaces: throws when `partitioned` is false, so a check cannot pass by seeing nothing.
   */
  processes(app: string): string[];
  output(): string;
}

/**
 * A machine that is ready but not started: its network (namespace, address)
 * and data dir exist, and `argv` is how to start its agent — for a machine
 * provider that starts it with the join token it was given. Everything it
 * runs is removed by `stop()` as the other nodes' is.
 */
export interface SpareMachine {
  name: string;
  address: string;
  netns: string | undefined;
  dataDir: string;
  /** The agent's command line without --server and --join-token (the provider adds them). */
  argv: string[];
}

export interface Cluster {
  url: string;
  gatewayUrl: string;
  token: string;
  /** With `tls`: the CA file of the API's certificate. */
  caFile?: string;
  /** True when the agents run in network namespaces (root), so links can be cut. */
  partitioned: boolean;
  nodes: ClusterNode[];
  spares: SpareMachine[];
  cli(
    args: string[],
    options?: { cwd?: string; timeoutMs?: number },
  ): Promise<{ code: number; stdout: string; stderr: string }>;
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  request(host: string, path?: string): Promise<{ status: number; body: string }>;
  serverOutput(): string;
  /** Removes everything this cluster created. Safe to call twice, and after a failed start. */
  stop(): Promise<void>;
}

/** Runs `ip` (or another command) and throws with its stderr on failure. */
function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

const quiet = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: "ignore" });

/** Whether this process may create network namespaces (root, and the kernel allows it). */
function canUseNetns(): boolean {
  if (process.getuid?.() !== 0) return false;
  if (quiet("ip", ["-V"]).status !== 0 || quiet("nsenter", ["--version"]).status !== 0) return false;
  const probe = `herdt-probe-${randomBytes(3).toString("hex")}`;
  const ok = quiet("ip", ["netns", "add", probe]).status === 0;
  if (ok) quiet("ip", ["netns", "del", probe]);
  return ok;
}

/** A 10.a.b.0/24 that no route on the host uses yet. */
function freeSubnet(): string {
  const routes = sh("ip", ["-4", "route", "show"]);
  for (let attempt = 0; attempt < 50; attempt++) {
    const prefix = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250) + 1}`;
    if (!routes.includes(`${prefix}.`)) return prefix;
  }
  throw new Error("no free 10.x.y.0/24 subnet for the test network");
}

/** The pids of every process in a network namespace. */
/** The pids in a namespace; `strict`: a failed listing throws rather than reading as "none". */
function netnsPids(netns: string, strict = false): number[] {
  const r = spawnSync("ip", ["netns", "pids", netns], { encoding: "utf8" });
  if (strict && r.status !== 0) throw new Error(`ip netns pids ${netns}: ${r.stderr || r.error || r.status}`);
  return (r.stdout ?? "")
    .split("\n")
    .map(Number)
    .filter((n) => n > 0);
}

function environ(pid: number): Record<string, string> {
  try {
    const out: Record<string, string> = {};
    for (const kv of readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")) {
      const eq = kv.indexOf("=");
      if (eq > 0) out[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    return out;
  } catch {
    return {};
  }
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((r) => proc.once("exit", () => r()));
}

/** Waits until `proc` printed something matching `pattern`; throws with its output if it exits first. */
async function until(
  proc: ChildProcess,
  out: () => string,
  pattern: RegExp,
  what: string,
): Promise<RegExpExecArray> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const m = pattern.exec(out());
    if (m) return m;
    if (proc.exitCode !== null || proc.signalCode !== null)
      throw new Error(`${what} exited (${proc.exitCode ?? proc.signalCode}):\n${out()}`);
    await sleep(50);
  }
  throw new Error(`${what} did not start within 60s:\n${out()}`);
}

/** Starts a server, a gateway and one agent per spec; on failure everything started is removed. */
export async function startCluster(options: {
  agents: AgentSpec[];
  /** `herd server --node-lost-after` in seconds; default: the server's own default. */
  nodeLostAfter?: number;
  /** The API over HTTPS (`herd server --tls`), verified with its CA by every client. */
  tls?: boolean;
  /** The gateway's worker processes (`--workers`); default 1, the single-process gateway. */
  gatewayWorkers?: number;
  /** Extra `herd server` flags. */
  serverArgs?: string[];
  /** Machines made ready but not started (named node-<agents+1>, …). */
  spares?: AgentSpec[];
}): Promise<Cluster> {
  const id = randomBytes(3).toString("hex");
  const work = mkdtempSync(join(tmpdir(), "herd-nodes-"));
  const procs: ChildProcess[] = [];
  const links: string[] = [];
  const namespaces: string[] = [];
  // HERD_TEST_LOOPBACK=1 runs the loopback fallback even as root.
  const partitioned = process.env.HERD_TEST_LOOPBACK !== "1" && canUseNetns();
  let bridge: string | undefined;
  let stopped = false;

  const spawnLogged = (cmd: string, args: string[]) => {
    const proc = spawn(cmd, args, {
      cwd: ROOT,
      env: { ...process.env, HERD_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    proc.stdout!.on("data", (d) => (out += d));
    proc.stderr!.on("data", (d) => (out += d));
    procs.push(proc);
    return { proc, output: () => out };
  };

  const nodes: ClusterNode[] = [];
  const spares: SpareMachine[] = [];
  /** Removes what the processes left: instance process groups, cgroups, namespaces, links, files. */
  const teardown = () => {
    for (const n of [...nodes, ...spares]) killRecordedInstances(n.dataDir);
    for (const ns of namespaces) {
      // Anything left in a namespace this test created is one of its instances.
      for (const pid of netnsPids(ns)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
    }
    spawnSync("sleep", ["0.1"]);
    for (const n of [...nodes, ...spares]) killRecordedInstances(n.dataDir); // removes the cgroups of processes now gone
    for (const ns of namespaces) quiet("ip", ["netns", "del", ns]);
    for (const l of links) quiet("ip", ["link", "del", l]);
    if (bridge) quiet("ip", ["link", "del", bridge]);
    rmSync(work, { recursive: true, force: true });
  };
  const killAll = () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  };
  // A test run that is interrupted (Ctrl-C, a timeout) still removes the namespaces and processes.
  const onExit = () => {
    if (stopped) return;
    stopped = true;
    killAll();
    teardown();
  };
  const onSignal = () => {
    onExit();
    process.exit(130);
  };
  process.once("exit", onExit);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    process.off("exit", onExit);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    // Agents first (kill -9: a graceful stop would leave the instances anyway), then what they ran.
    for (const n of nodes) n.restore();
    killAll();
    await Promise.all(procs.map((p) => Promise.race([exited(p), grace(5000)])));
    teardown();
  };

  try {
    const portBase = 30000 + Math.floor(Math.random() * 20) * 1000;
    let serverHost = "127.0.0.1";
    let prefix = "";
    if (partitioned) {
      prefix = freeSubnet();
      bridge = `herdt${id}`;
      serverHost = `${prefix}.1`;
      sh("ip", ["link", "add", bridge, "type", "bridge"]);
      sh("ip", ["addr", "add", `${serverHost}/24`, "dev", bridge]);
      sh("ip", ["link", "set", bridge, "up"]);
    }

    const serverDir = join(work, "server");
    const server = spawnLogged(NODE, [
      "--no-warnings",
      MAIN,
      "server",
      "--data",
      serverDir,
      "--port",
      "0",
      "--host",
      serverHost,
      ...(options.nodeLostAfter !== undefined ? ["--node-lost-after", String(options.nodeLostAfter)] : []),
      ...(options.tls ? ["--tls"] : []),
      ...(options.serverArgs ?? []),
    ]);
    const url = (
      await until(server.proc, server.output, /herd server: (https?:\/\/\S+)\/api\/v1/, "herd server")
    )[1];
    const token = readFileSync(join(serverDir, "admin-token"), "utf8").trim();
    const caFile = options.tls ? join(serverDir, "tls", "ca-cert.pem") : undefined;
    const caFlag = caFile ? ["--ca", caFile] : [];
    const trust = trusting(caFile ? caDispatcher(readFileSync(caFile, "utf8")) : undefined);

    const api = async <T>(method: string, path: string, body?: unknown) => {
      const res = await fetch(`${url}/api/v1${path}`, {
        ...trust,
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
    };
    const credential = async (body: Record<string, unknown>): Promise<string> => {
      const r = await api<{ token: string }>("POST", "/tokens", body);
      if (r.status !== 201)
        throw new Error(`POST /tokens ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      return r.body.token;
    };
    const gatewayToken = await credential({ name: "e2e gateway", kind: "gateway" });
    const joinToken = await credential({
      name: "e2e join",
      kind: "join",
      expiresIn: "1h",
      uses: options.agents.length,
    });

    const gateway = spawnLogged(NODE, [
      "--no-warnings",
      MAIN,
      "gateway",
      "--server",
      url,
      "--token",
      gatewayToken,
      ...caFlag,
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      "--workers",
      String(options.gatewayWorkers ?? 1),
      "--metrics-port",
      "off",
      "--data",
      join(work, "gateway"),
    ]);
    const gatewayUrl = (
      await until(gateway.proc, gateway.output, /herd gateway: (http:\/\/\S+)/, "herd gateway")
    )[1];

    /** A machine's data dir and network: its own namespace on the bridge (netns), or loopback. */
    const machine = (n: number) => {
      const name = `node-${n}`;
      const dataDir = join(work, name);
      mkdirSync(dataDir);
      let netns: string | undefined;
      let hostEnd: string | undefined;
      let address = "127.0.0.1";
      if (partitioned) {
        netns = `herdt-${id}-${n}`;
        hostEnd = `herdt${id}h${n}`;
        const inner = `herdt${id}n${n}`;
        address = `${prefix}.${10 + n}`;
        sh("ip", ["netns", "add", netns]);
        namespaces.push(netns);
        sh("ip", ["link", "add", hostEnd, "type", "veth", "peer", "name", inner]);
        links.push(hostEnd);
        sh("ip", ["link", "set", inner, "netns", netns]);
        sh("ip", ["link", "set", hostEnd, "master", bridge!]);
        sh("ip", ["link", "set", hostEnd, "up"]);
        sh("ip", ["-n", netns, "link", "set", "lo", "up"]);
        sh("ip", ["-n", netns, "addr", "add", `${address}/24`, "dev", inner]);
        sh("ip", ["-n", netns, "link", "set", inner, "up"]);
        sh("ip", ["-n", netns, "route", "add", "default", "via", serverHost]);
      }
      /** The agent's command line, without its credential. */
      const agentArgv = (flags: string[]) => {
        const argv = [
          "--no-warnings",
          MAIN,
          "agent",
          ...caFlag,
          "--name",
          name,
          "--data",
          dataDir,
          "--address",
          address,
          // On one machine, each agent hands out ports of its own (in a namespace, the defaults).
          ...(netns ? [] : ["--ports", `${portBase + n * 1000}-${portBase + n * 1000 + 999}`]),
          ...flags,
        ];
        return netns ? ["nsenter", `--net=/run/netns/${netns}`, NODE, ...argv] : [NODE, ...argv];
      };
      return { name, dataDir, netns, hostEnd, address, agentArgv };
    };

    for (let n = 1; n <= options.agents.length; n++) {
      const { name, dataDir, netns, hostEnd, address, agentArgv } = machine(n);
      let flags = options.agents[n - 1].args ?? [];
      let agent: { proc: ChildProcess; output: () => string } | undefined;
      let log = "";
      const node: ClusterNode = {
        name,
        address,
        netns,
        dataDir,
        running: () => agent !== undefined && agent.proc.exitCode === null && agent.proc.signalCode === null,
        start: async (args, pattern = /herd agent \S+ joined/) => {
          if (args) flags = args;
          // The first start joins; later ones use the credential kept in the data dir.
          const [cmd, ...argv] = [...agentArgv(flags), "--server", url, "--join-token", joinToken];
          agent = spawnLogged(cmd, argv);
          const current = agent;
          await until(current.proc, current.output, pattern, `agent ${name}`);
        },
        stop: async () => {
          if (!agent || !node.running()) return;
          agent.proc.kill("SIGTERM");
          await exited(agent.proc);
          // Its output moves to the log once (output() would show it twice otherwise).
          log += agent.output();
          agent = undefined;
        },
        kill9: async (instancePids) => {
          // In a namespace, every process there belongs to this machine: agent and instances die together.
          const victims = netns
            ? netnsPids(netns)
            : [...(agent?.proc.pid ? [agent.proc.pid] : []), ...instancePids];
          for (const pid of victims) {
            try {
              process.kill(netns ? pid : -pid, "SIGKILL");
            } catch {
              try {
                process.kill(pid, "SIGKILL");
              } catch {}
            }
          }
          if (agent) {
            await exited(agent.proc);
            log += agent.output();
            agent = undefined;
          }
        },
        cut: () => {
          if (hostEnd) sh("ip", ["link", "set", hostEnd, "down"]);
        },
        restore: () => {
          if (hostEnd) quiet("ip", ["link", "set", hostEnd, "up"]);
        },
        processes: (app) => {
          // On loopback every agent's instances share the host: no per-machine answer to give.
          if (!netns)
            throw new Error(`processes(${app}): needs network namespaces (check cluster.partitioned)`);
          const ids = new Set<string>();
          for (const pid of netnsPids(netns, true)) {
            const env = environ(pid);
            if (env.HERD_APP === app && env.HERD_INSTANCE) ids.add(env.HERD_INSTANCE);
          }
          return [...ids].sort();
        },
        output: () => log + (agent?.output() ?? ""),
      };
      nodes.push(node);
    }
    for (const [k, spec] of (options.spares ?? []).entries()) {
      const { name, dataDir, netns, address, agentArgv } = machine(options.agents.length + 1 + k);
      spares.push({ name, dataDir, netns, address, argv: agentArgv(spec.args ?? []) });
    }
    await Promise.all(nodes.map((n) => n.start()));
    await waitFor("every node ready", async () => {
      const { body } = await api<{ items: { name: string; state: string }[] }>("GET", "/nodes");
      return body.items.length === nodes.length && body.items.every((x) => x.state === "ready");
    });

    return {
      url,
      gatewayUrl,
      token,
      ...(caFile ? { caFile } : {}),
      partitioned,
      nodes,
      spares,
      cli: (args, o = {}) =>
        runCli(args, {
          cwd: o.cwd ?? ROOT,
          env: { HERD_SERVER: url, HERD_TOKEN: token, ...(caFile ? { HERD_CA: caFile } : {}) },
          timeoutMs: o.timeoutMs,
        }),
      api,
      request: (host, path = "/") => gatewayRequest(gatewayUrl, host, path),
      serverOutput: server.output,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Writes a tiny node app that answers with its instance id, and its herd.yaml; returns its directory. */
export function writeApp(parent: string, app: string, herdYaml: string): string {
  const dir = join(parent, app);
  mkdirSync(dir, { recursive: true });
  const files: Record<string, string> = {
    "package.json": `${JSON.stringify({ name: app, version: "1.0.0", private: true, type: "module" })}\n`,
    "server.js": `import { createServer } from "node:http";
const id = process.env.HERD_INSTANCE;
const server = createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/plain", "x-instance": id });
  res.end(req.url === "/healthz" ? "ok\\n" : id + "\\n");
});
server.listen(Number(process.env.PORT));
process.on("SIGTERM", () => { server.close(() => process.exit(0)); setTimeout(() => process.exit(0), 2000).unref(); });
`,
    "herd.yaml": herdYaml,
  };
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** A running instance of the scenario, where other nodes reach it. */
export interface Reached {
  id: string;
  node: string;
  port: number;
  address: string | undefined;
}

/**
 * Two tenants across nodes (nodes.test.ts, containers-nodes.test.ts): tenant
 * ta's app reach (web on node-1, sibling on node-2) and tenant tb's app
 * target (web on node-2), each prober-app.ts's CONNECTOR; every service has the herd.yaml
 * lines `common` besides its command, health check, node selector and route.
 * Both apps are destroyed when the test ends.
 * `connect(to)` asks reach's web to open a TCP connection to `to`.
 */
export async function tenantsAcrossNodes(
  c: Cluster,
  t: { after(fn: () => Promise<void>): void },
  work: string,
  common: string[],
): Promise<{
  connector: Reached;
  sibling: Reached;
  target: Reached;
  connect(to: { address?: string | undefined; port: number }): Promise<string>;
}> {
  for (const name of ["ta", "tb"]) {
    const r = await c.api("POST", "/tenants", { name });
    if (r.status !== 201 && r.status !== 409)
      throw new Error(`tenant ${name}: ${r.status} ${JSON.stringify(r.body)}`);
  }
  const service = (name: string, zone: string, host?: string) =>
    [
      `  ${name}:`,
      ...["command: node server.js", "health: { path: /healthz }", ...common].map((l) => `    ${l}`),
      `    placement: { nodeSelector: { zone: ${zone} } }`,
      ...(host ? [`    routes: [{ host: ${host}, path: / }]`] : []),
    ].join("\n");
  const yaml = (app: string, services: string[]) => `app: ${app}\nservices:\n${services.join("\n")}\n`;
  const apps: [string, string, string][] = [
    ["ta", "reach", yaml("reach", [service("web", "a", "reach.localhost"), service("sibling", "b")])],
    ["tb", "target", yaml("target", [service("web", "b", "target.localhost")])],
  ];
  for (const [tenant, app, herdYaml] of apps) {
    const dir = join(work, app);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "herd.yaml"), herdYaml);
    writeFileSync(join(dir, "server.js"), CONNECTOR);
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: app, private: true }));
    t.after(async () => {
      await c.cli(["apps", "destroy", app, "--tenant", tenant, "--confirm", app]);
      await waitFor(
        `${app} to be destroyed`,
        async () => (await c.api("GET", `/apps/${app}?tenant=${tenant}`)).status === 404,
      );
    });
    const r = await c.cli(["deploy", "--tenant", tenant, dir], { timeoutMs: 180_000 });
    if (r.code !== 0) throw new Error(`deploy ${tenant}/${app}: ${r.stdout}${r.stderr}`);
  }
  const one = async (tenant: string, app: string, service: string): Promise<Reached> => {
    const { body } = await c.api<{ items: Instance[] }>("GET", `/apps/${app}/instances?tenant=${tenant}`);
    const i = body.items.find((x) => x.service === service && x.state === "running");
    if (!i?.port || !i.node)
      throw new Error(`${tenant}/${app}/${service} runs: ${JSON.stringify(body.items)}`);
    const node = i.node;
    return { id: i.id, node, port: i.port, address: c.nodes.find((n) => n.name === node)?.address };
  };
  return {
    connector: await one("ta", "reach", "web"),
    sibling: await one("ta", "reach", "sibling"),
    target: await one("tb", "target", "web"),
    connect: async (to) =>
      (await c.request("reach.localhost", `/connect?host=${to.address}&port=${to.port}`)).body,
  };
}
