/**
 * Test harness for the gateway: object factories, a stand-in control plane
 * that speaks the real /snapshot and /watch protocol, and small upstream
 * servers. Used by the gateway's tests; not imported by the gateway itself.
 */

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { freePort } from "../common/free-port.ts";
import type { LoadReport } from "../model/load.ts";
import type { Route } from "../model/manifest.ts";
import type {
  App,
  Consumer,
  Instance,
  InstanceState,
  JwtCredential,
  Kind,
  Node,
  Service,
  StoredObject,
  WatchEvent,
} from "../model/objects.ts";
import type { Store } from "../store/store.ts";
import { buildRouteTable, type RouteTable } from "./route-table.ts";

/** A service with the given routes (paths default to `/`). */
export function testService(
  tenant: string,
  app: string,
  name: string,
  routes: Array<Partial<Route> & { host: string }>,
): Service {
  return {
    tenant,
    app,
    name,
    release: 1,
    spec: {
      command: "node server.js",
      instances: 1,
      resources: { cpu: 0.25, memory: 256 * 1024 * 1024 },
      health: { kind: "tcp", intervalMs: 1000, timeoutMs: 2000, failures: 3, startupMs: 30_000 },
      mode: "cattle",
      env: {},
      routes: routes.map((r) => ({ ...r, path: r.path ?? "/" })),
    },
    instances: 1,
    state: "running",
    message: "",
    crashes: 0,
  };
}

/** An instance of `tenant/app/service` on `node` at `port`. */
export function testInstance(
  id: string,
  target: { tenant?: string; app: string; service: string },
  node: string | null,
  port: number | undefined,
  state: InstanceState = "running",
): Instance {
  return {
    id,
    tenant: target.tenant ?? "default",
    app: target.app,
    service: target.service,
    release: 1,
    mode: "cattle",
    node,
    desired: "running",
    generation: 1,
    state,
    reason: "",
    message: "",
    run: {
      slug: "0".repeat(64),
      command: "node server.js",
      env: {},
      resources: { cpu: 0.25, memory: 256 * 1024 * 1024 },
      health: { kind: "tcp", intervalMs: 1000, timeoutMs: 2000, failures: 3, startupMs: 30_000 },
    },
    port,
    restarts: 0,
    createdAt: "2026-01-01T00:00:00.000Z",
  };
}

/** A consumer of tenant `default` with these API keys (stored hashed, as the API does) and JWT credentials. */
export function testConsumer(
  name: string,
  keys: string[],
  jwt: Array<Omit<JwtCredential, "id" | "createdAt">> = [],
  tenant = "default",
): Consumer {
  const createdAt = "2026-01-01T00:00:00.000Z";
  return {
    tenant,
    name,
    createdAt,
    keys: keys.map((key, i) => ({
      id: `k${i}`,
      hash: createHash("sha256").update(key).digest("hex"),
      hint: key.slice(0, 6),
      createdAt,
    })),
    jwt: jwt.map((c, i) => ({ ...c, id: `j${i}`, createdAt })),
  };
}

/** A ready node at `address`. */
export function testNode(name: string, address: string): Node {
  const capacity = { cpu: 4, memory: 8 * 1024 ** 3 };
  return {
    name,
    address,
    labels: {},
    capacity,
    allocatable: capacity,
    state: "ready",
    lastHeartbeat: "2026-01-01T00:00:00.000Z",
    registeredAt: "2026-01-01T00:00:00.000Z",
    agentVersion: "test",
    isolation: { cgroups: "none", reason: "test" },
    schedulable: true,
  };
}

/** The route table of one service, shop/web at host shop.test, on one instance at 127.0.0.1:`port`. */
export function shopTable(port: number): RouteTable {
  return buildRouteTable(
    {
      services: [testService("default", "shop", "web", [{ host: "shop.test" }])],
      instances: [testInstance("w", { app: "shop", service: "web" }, "local", port)],
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
}

/** A stand-in for the control plane's /api/v1/snapshot and /api/v1/watch. */
export interface TestControlPlane {
  url: string;
  /** Current store revision. */
  revision(): number;
  /** Stores an object; returns its revision. Open watches get the event at once. */
  put(kind: Kind, key: string, value: unknown): number;
  /** Deletes an object; returns the revision of the deletion. */
  delete(kind: Kind, key: string): number;
  /** Forgets the history up to now: watches from older revisions get 410. */
  compact(): void;
  /** Ends every open watch stream (the client sees a disconnect). */
  dropWatches(): void;
  /** How many snapshot requests were answered. */
  snapshots(): number;
  /** The last status report of each gateway (PUT /api/v1/gateways/:id/status), by id. */
  reports(): Map<string, Record<string, unknown>>;
  /** Every load report received (PUT /api/v1/gateways/:id/load), oldest first, by reporter id. */
  loads(): Map<string, LoadReport[]>;
  close(): Promise<void>;
}

/** Starts a stand-in control plane on an ephemeral port that requires `token`. */
export async function startTestControlPlane(token: string): Promise<TestControlPlane> {
  const objects = new Map<string, StoredObject>();
  const history: WatchEvent[] = [];
  const watchers = new Set<http.ServerResponse>();
  let revision = 0;
  let compactedTo = 0;
  let snapshotCount = 0;
  const reports = new Map<string, Record<string, unknown>>();
  const loads = new Map<string, LoadReport[]>();

  const record = (type: "put" | "delete", kind: Kind, key: string, value: unknown): number => {
    revision++;
    const id = `${kind}/${key}`;
    const before = objects.get(id);
    const object: StoredObject = {
      kind,
      key,
      revision,
      createRevision: before?.createRevision ?? revision,
      value: type === "put" ? value : before?.value,
    };
    if (type === "put") objects.set(id, object);
    else objects.delete(id);
    const event: WatchEvent = { type, kind, key, revision, object };
    history.push(event);
    const line = `${JSON.stringify(event)}\n`;
    for (const res of watchers) res.write(line);
    return revision;
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (req.headers.authorization !== `Bearer ${token}`) {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: "unauthorized", message: "bad token" }));
      return;
    }
    const kinds = new Set((url.searchParams.get("kinds") ?? "").split(","));
    if (url.pathname === "/api/v1/snapshot") {
      snapshotCount++;
      const items = [...objects.values()].filter((o) => kinds.has(o.kind));
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ revision, items }));
      return;
    }
    if (url.pathname === "/api/v1/watch") {
      const from = Number(url.searchParams.get("from") ?? revision);
      if (from < compactedTo) {
        res.writeHead(410, { "content-type": "application/json" });
        res.end(JSON.stringify({ code: "gone", message: `revision ${from} is compacted` }));
        return;
      }
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.write(`${JSON.stringify({ type: "ping" })}\n`);
      for (const event of history) {
        if (event.revision > from && kinds.has(event.kind)) res.write(`${JSON.stringify(event)}\n`);
      }
      watchers.add(res);
      res.on("close", () => watchers.delete(res));
      return;
    }
    const status = /^\/api\/v1\/gateways\/([^/]+)(\/status|\/load)?$/.exec(url.pathname);
    if (status) {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => {
        body += chunk;
      });
      req.on("end", () => {
        const id = decodeURIComponent(status[1]);
        if (req.method === "PUT" && status[2] === "/load") {
          const list = loads.get(id) ?? [];
          list.push(JSON.parse(body));
          loads.set(id, list);
        } else if (req.method === "PUT" && status[2]) reports.set(id, JSON.parse(body));
        else if (req.method === "DELETE") reports.delete(id);
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    revision: () => revision,
    put: (kind, key, value) => record("put", kind, key, value),
    delete: (kind, key) => record("delete", kind, key, undefined),
    compact: () => {
      compactedTo = revision;
      history.length = 0;
    },
    dropWatches: () => {
      for (const res of watchers) res.destroy();
      watchers.clear();
    },
    snapshots: () => snapshotCount,
    reports: () => reports,
    loads: () => loads,
    close: async () => {
      for (const res of watchers) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A real HTTP server standing in for one app instance; `handler` answers its requests. */
export interface TestUpstream {
  port: number;
  /** Requests it has received. */
  hits: number;
  server: http.Server;
  close(): Promise<void>;
}

/** Starts an upstream on an ephemeral port of 127.0.0.1. */
export async function startUpstream(handler: http.RequestListener): Promise<TestUpstream> {
  const upstream = { hits: 0 } as TestUpstream;
  const server = http.createServer((req, res) => {
    upstream.hits++;
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  upstream.port = (server.address() as AddressInfo).port;
  upstream.server = server;
  upstream.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return upstream;
}

/**
 * A port on 127.0.0.1 that nothing listens on: freePort's, below the
 * kernel's ephemeral range. A port the kernel handed out and that was
 * released could be handed out again to the next listen on port 0 (the
 * gateway's own metrics listener took one once, and answered the "dead"
 * instance's requests with its 404).
 */
export function closedPort(): Promise<number> {
  return freePort();
}

/** One HTTP request through `port` with the given Host; the body is read as text. */
export async function request(
  port: number,
  host: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: options.method ?? "GET",
        headers: { host, ...options.headers },
        agent: false,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          body += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Polls `check` every few milliseconds until it is true; fails after `timeoutMs`. */
export function waitFor(check: () => boolean, timeoutMs = 3000, what = "condition"): Promise<void> {
  return until(what, check, timeoutMs, 2);
}

/** Polls `check` (it may be async) every `everyMs` until it is true; fails after `timeoutMs`, naming `what`. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  everyMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** One sample of a Prometheus text scrape: its metric name (with _bucket/_sum/_count), labels and value. */
export interface ScrapedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text format (0.0.4) into samples; comment lines are skipped. Throws on a line it cannot read. */
export function parseMetrics(text: string): ScrapedSample[] {
  const samples: ScrapedSample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    const pairs = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/gy;
    const body = m[2] ?? "";
    let read = 0;
    for (let p = pairs.exec(body); p !== null; p = pairs.exec(body)) {
      labels[p[1]] = p[2].replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
      read = pairs.lastIndex;
    }
    if (read !== body.length) throw new Error(`unreadable labels: ${line}`);
    const value = m[3] === "+Inf" ? Number.POSITIVE_INFINITY : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    samples.push({ name: m[1], labels, value });
  }
  return samples;
}

/** The sum of the samples named `name` whose labels include all of `labels`. */
export function metricSum(
  samples: ScrapedSample[],
  name: string,
  labels: Record<string, string> = {},
): number {
  let sum = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

/** GETs a gateway's /metrics URL; checks the content type; returns the parsed samples and the text. */
export async function scrape(url: string): Promise<{ samples: ScrapedSample[]; text: string }> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`scrape of ${url}: HTTP ${res.status}`);
  const type = res.headers.get("content-type") ?? "";
  if (!type.startsWith("text/plain; version=0.0.4"))
    throw new Error(`scrape of ${url}: content type ${type}`);
  const text = await res.text();
  return { samples: parseMetrics(text), text };
}

/**
 * The usual cluster-test world: node `local`, service default/shop/web with
 * `routes`, and its one instance `ia` answering on `port`.
 */
export function putShop(
  controlPlane: TestControlPlane,
  port: number,
  routes: Array<Partial<Route> & { host: string }> = [{ host: "shop.test" }],
): void {
  controlPlane.put("node", "local", testNode("local", "127.0.0.1"));
  controlPlane.put("service", "default/shop/web", testService("default", "shop", "web", routes));
  controlPlane.put("instance", "ia", testInstance("ia", { app: "shop", service: "web" }, "local", port));
}

/** The same world in a real control plane's store: app shop (release 1), a fresh node, web and its instance `web-1`. */
export async function seedShop(store: Store, port: number): Promise<void> {
  const now = new Date().toISOString();
  await store.put("app", "default/shop", {
    tenant: "default",
    name: "shop",
    createdAt: now,
    release: 1,
    latestVersion: 1,
  } satisfies App);
  await store.put("node", "local", { ...testNode("local", "127.0.0.1"), lastHeartbeat: now });
  await store.put(
    "service",
    "default/shop/web",
    testService("default", "shop", "web", [{ host: "shop.test" }]),
  );
  await store.put("instance", "web-1", testInstance("web-1", { app: "shop", service: "web" }, "local", port));
}

/** SIGKILL to every pid a test saw (gateway primaries and workers); those already gone are skipped. */
export function killAll(pids: Iterable<number>): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** The pids of a process's children (a gateway primary's workers). */
export function childPids(pid: number): number[] {
  try {
    return execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" })
      .split("\n")
      .map((line) => Number(line.trim()))
      .filter((n) => n > 0);
  } catch {
    return []; // ps exits 1 when there are none
  }
}

/** A listening port whose connections never complete: for connect timeouts. */
export interface Blackhole {
  port: number;
  close(): Promise<void>;
}

/**
 * A port on 127.0.0.1 where a TCP connect hangs: a listener with a backlog of
 * one, in a worker thread whose event loop is blocked (so it never accepts),
 * and whose queue is filled by two connections of its own. The kernel then
 * drops further SYNs, as a host that is down or overloaded would.
 */
export async function startBlackhole(): Promise<Blackhole> {
  const { Worker } = await import("node:worker_threads");
  const { connect } = await import("node:net");
  const wake = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const net = require("node:net");
     const { parentPort, workerData } = require("node:worker_threads");
     const server = net.createServer();
     server.listen({ port: 0, host: "127.0.0.1", backlog: 1 }, () => {
       parentPort.postMessage(server.address().port);
       parentPort.once("message", () => {
         parentPort.postMessage("blocked"); // no accept can run between this and the wait
         Atomics.wait(workerData, 0, 0); // blocked: nothing is accepted until close()
         server.close();
         process.exit(0);
       });
     });`,
    { eval: true, workerData: wake },
  );
  const port = await new Promise<number>((resolve) => worker.once("message", resolve));
  worker.postMessage("block");
  await new Promise((resolve) => worker.once("message", resolve));
  const fill = [connect(port, "127.0.0.1"), connect(port, "127.0.0.1")];
  for (const socket of fill) {
    socket.on("error", () => {});
    await new Promise((resolve) => socket.once("connect", resolve));
  }
  return {
    port,
    close: async () => {
      for (const socket of fill) socket.destroy();
      Atomics.store(wake, 0, 1);
      Atomics.notify(wake, 0);
      await new Promise((resolve) => worker.once("exit", resolve));
    },
  };
}

/** The Sec-WebSocket-Accept answer to a client's Sec-WebSocket-Key (RFC 6455). */
export function webSocketAccept(key: string | undefined): string {
  return createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
}

/** Answers a WebSocket upgrade on a test server's 'upgrade' event: 101 Switching Protocols. */
export function acceptWebSocket(req: http.IncomingMessage, socket: Socket): void {
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${webSocketAccept(req.headers["sec-websocket-key"])}\r\n\r\n`,
  );
}

/** A WebSocket server (node:http 'upgrade' and a tiny frame codec) that answers each text message with `name:message`. */
export async function startWsEcho(
  name: string,
  refuse = false,
): Promise<TestUpstream & { upgrades: number }> {
  const server = Object.assign(await startUpstream((_req, res) => res.writeHead(426).end()), { upgrades: 0 });
  server.server.on("upgrade", (req: http.IncomingMessage, socket: Socket) => {
    server.upgrades++;
    if (refuse) {
      socket.end("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    acceptWebSocket(req, socket);
    let buffer = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      // Client frames are masked; these tests send short ones (length < 126).
      while (buffer.length >= 6) {
        const opcode = buffer[0] & 0x0f;
        const length = buffer[1] & 0x7f;
        if (buffer.length < 6 + length) break;
        const mask = buffer.subarray(2, 6);
        const payload = Buffer.from(buffer.subarray(6, 6 + length).map((b, i) => b ^ mask[i % 4]));
        buffer = buffer.subarray(6 + length);
        if (opcode === 0x8) {
          socket.end(Buffer.from([0x88, 0]));
          return;
        }
        const reply = Buffer.from(`${name}:${payload}`);
        socket.write(Buffer.concat([Buffer.from([0x81, reply.length]), reply]));
      }
    });
    socket.on("error", () => {});
    // An upgraded socket of an http.Server is half-open on the peer's FIN: close it too.
    socket.on("end", () => socket.end());
  });
  return server;
}

/** Opens a WebSocket through the gateway, sends `hi` and returns the answer (or the failure). */
export function wsRoundTrip(url: string): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.onopen = () => ws.send("hi");
    let answer = "error";
    ws.onmessage = (event) => {
      answer = String(event.data);
      ws.close();
    };
    // Settled once closed, so no connection outlives the test.
    ws.onclose = () => resolve(answer);
  });
}
