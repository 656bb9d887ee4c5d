// Service discovery's internal listener in a gateway with workers (`herd gateway
// --workers 2 --internal-port 0`): every worker listens on the internal port with
// its own socket (SO_REUSEPORT), the key reaches them outside the command line,
// either worker alone serves internal calls while the other is replaced, and
// the primary's /metrics sums internal calls by caller across workers.

import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { callerToken, readInternalFile } from "../common/internal-caller.ts";
import { type GatewayChild, spawnGatewayChild } from "./cluster-child.ts";
import {
  childPids,
  killAll,
  metricSum,
  request,
  scrape,
  startTestControlPlane,
  startUpstream,
  type TestControlPlane,
  type TestUpstream,
  testInstance,
  testNode,
  testService,
  until,
} from "./testing.ts";

const TOKEN = "cluster-internal-token";
const FRONT = { tenant: "acme", app: "front", service: "web" };

/** The inodes of the TCP sockets listening on 127.0.0.1:`port` (/proc/net/tcp, state 0A). */
async function listeningInodes(port: number): Promise<Set<string>> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const inodes = new Set<string>();
  for (const line of (await readFile("/proc/net/tcp", "utf8")).split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[3] === "0A") inodes.add(f[9]);
  }
  return inodes;
}

/** Which of `inodes` `pid` holds among its open files. */
async function socketsOf(pid: number, inodes: Set<string>): Promise<string[]> {
  const found: string[] = [];
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
    const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (inode !== undefined && inodes.has(inode)) found.push(inode);
  }
  return found;
}

/** Which of `pids` hold one of `inodes`. */
async function holders(pids: number[], inodes: Set<string>): Promise<number[]> {
  const found: number[] = [];
  for (const pid of pids) if ((await socketsOf(pid, inodes)).length > 0) found.push(pid);
  return found;
}

describe("internal listener in a gateway with workers (herd gateway --workers 2 --internal-port 0)", () => {
  let dataDir: string;
  let controlPlane: TestControlPlane;
  let upstream: TestUpstream;
  let gateway: GatewayChild | undefined;
  /** Every pid this test saw, killed at the end whatever happened. */
  const pids = new Set<number>();

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "herd-gateway-cluster-internal-"));
    controlPlane = await startTestControlPlane(TOKEN);
    upstream = await startUpstream((req, res) => res.end(`hello ${req.url}`));
    controlPlane.put("node", "local", testNode("local", "127.0.0.1"));
    controlPlane.put("service", "acme/hello/web", testService("acme", "hello", "web", []));
    controlPlane.put(
      "instance",
      "h0",
      testInstance("h0", { tenant: "acme", app: "hello", service: "web" }, "local", upstream.port),
    );
  });

  after(async () => {
    killAll(pids);
    await controlPlane.close();
    await upstream.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test("every worker serves the internal port; either one alone serves it; /metrics sums calls by caller", async () => {
    gateway = await spawnGatewayChild({
      server: controlPlane.url,
      token: TOKEN,
      port: 0,
      host: "127.0.0.1",
      dataDir,
      workers: 2,
      metricsPort: 0,
      internalPort: 0,
    });
    pids.add(gateway.pid);
    const primary = gateway.pid;
    const { metricsUrl } = gateway;
    assert.ok(metricsUrl);
    const file = readInternalFile(join(dataDir, "internal.json"));
    assert.ok(file, "the primary published internal.json once the workers listened");
    const port = Number(new URL(file.url).port);
    const key = Buffer.from(file.key, "base64url");
    const path = `/.herd/${callerToken(key, FRONT)}/hello/web/greet`;
    const call = async () => {
      const reply = await request(port, "127.0.0.1", path);
      assert.equal(reply.status, 200, reply.body);
      assert.equal(reply.body, "hello /greet");
    };

    const workers = childPids(primary);
    for (const pid of workers) pids.add(pid);
    assert.equal(workers.length, 2);
    // Each worker has its own listening socket on the port (SO_REUSEPORT), the primary none.
    const inodes = await listeningInodes(port);
    assert.equal(inodes.size, 2, "two listening sockets on the internal port");
    assert.deepEqual((await holders(workers, inodes)).sort(), [...workers].sort());
    assert.deepEqual(await holders([primary], inodes), []);
    // The key reaches the workers in their environment, never on a command line.
    for (const pid of [primary, ...workers]) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
      assert.ok(!cmdline.includes(file.key), `the key is not on ${pid}'s command line`);
    }

    for (let i = 0; i < 10; i++) await call();
    const refused = await request(port, "127.0.0.1", "/.herd/forged.x/hello/web");
    assert.equal(refused.status, 403);
    let { samples } = await scrape(metricsUrl);
    const internal = { route: "internal", tenant: "acme", app: "hello", service: "web", caller: "front/web" };
    assert.equal(
      metricSum(samples, "herd_gateway_requests_total", { ...internal, code: "200", outcome: "upstream" }),
      10,
    );
    assert.equal(metricSum(samples, "herd_gateway_request_duration_seconds_count", internal), 10);
    assert.equal(
      metricSum(samples, "herd_gateway_requests_total", { route: "internal", code: "403", caller: "" }),
      1,
    );

    // Each worker in turn is killed; calls (one connection each, none in flight at the kill) keep
    // succeeding through the other, and its replacement listens on the port again.
    let live = workers;
    for (const victim of workers) {
      const inodes = await listeningInodes(port);
      const held = await socketsOf(victim, inodes);
      assert.equal(held.length, 1, `worker ${victim} holds one listening socket`);
      process.kill(victim, "SIGKILL");
      // Its socket is gone once its last thread has exited (its main thread's zombie is not enough).
      await until(
        `worker ${victim}'s socket to close`,
        async () => !(await listeningInodes(port)).has(held[0]),
        20_000,
      );
      for (let i = 0; i < 10; i++) await call();
      await until(
        "a replacement worker listening on the internal port",
        async () => {
          const now = childPids(primary);
          for (const pid of now) pids.add(pid);
          if (now.length !== 2 || now.includes(victim)) return false;
          const held = await holders(now, await listeningInodes(port));
          return held.length === 2;
        },
        20_000,
      );
      live = childPids(primary);
    }
    assert.ok(!live.some((pid) => workers.includes(pid)), "both first workers were replaced");
    for (let i = 0; i < 5; i++) await call();
    ({ samples } = await scrape(metricsUrl));
    // The calls served by killed workers after their last scrape are lost (cluster.ts), so at least
    // the 10 scraped plus the 5 the live workers served.
    const total = metricSum(samples, "herd_gateway_requests_total", { ...internal, code: "200" });
    assert.ok(total >= 15 && total <= 35, `internal calls counted: ${total}`);
  });
});
