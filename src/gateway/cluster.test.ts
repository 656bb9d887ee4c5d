import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type GatewayChild, spawnGatewayChild } from "./cluster-child.ts";
import {
  childPids,
  killAll,
  putShop,
  request,
  startTestControlPlane,
  startUpstream,
  type TestControlPlane,
  type TestUpstream,
  testInstance,
  testService,
  until,
} from "./testing.ts";

const TOKEN = "cluster-token";

/** Alive and not a zombie waiting to be reaped. */
async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

describe("gateway with worker processes (herd gateway --workers 2)", () => {
  let dataDir: string;
  let controlPlane: TestControlPlane;
  let upstream: TestUpstream;
  let gateway: GatewayChild | undefined;
  /** Every pid this test saw, killed at the end whatever happened. */
  const pids = new Set<number>();

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "herd-gateway-cluster-"));
    controlPlane = await startTestControlPlane(TOKEN);
    upstream = await startUpstream((_req, res) => res.end(`served by ${process.pid}`));
    putShop(controlPlane, upstream.port);
  });

  after(async () => {
    killAll(pids);
    await controlPlane.close();
    await upstream.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  async function served(port: number): Promise<void> {
    const reply = await request(port, "shop.test", "/");
    assert.equal(reply.status, 200, reply.body);
  }

  test("serves from every worker, replaces a killed worker, and leaves nothing when the primary is killed", async () => {
    gateway = await spawnGatewayChild({
      server: controlPlane.url,
      token: TOKEN,
      port: 0,
      host: "127.0.0.1",
      dataDir,
      workers: 2,
    });
    pids.add(gateway.pid);
    const { port } = gateway;
    assert.ok(port > 0, "the primary reports the port it got for --port 0");
    const workers = childPids(gateway.pid);
    for (const pid of workers) pids.add(pid);
    assert.equal(workers.length, 2, "two workers");
    for (let i = 0; i < 10; i++) await served(port);

    // A change reaches every worker: a second host, served at once by all of them.
    controlPlane.put(
      "service",
      "default/shop/api",
      testService("default", "shop", "api", [{ host: "api.shop.test" }]),
    );
    controlPlane.put(
      "instance",
      "ib",
      testInstance("ib", { app: "shop", service: "api" }, "local", upstream.port),
    );
    await until("the new route on every worker", async () => {
      const replies = await Promise.all(Array.from({ length: 8 }, () => request(port, "api.shop.test", "/")));
      return replies.every((r) => r.status === 200);
    });

    // Kill one worker between two requests: every request keeps succeeding (the other worker
    // accepts from the shared socket) while the primary forks a replacement.
    let replaced: number[] = [];
    for (let i = 0; replaced.length === 0 || i < 40; i++) {
      if (i === 5) process.kill(workers[0], "SIGKILL");
      await served(port);
      const now = childPids(gateway.pid);
      for (const pid of now) pids.add(pid);
      if (i > 5 && now.length === 2 && !now.includes(workers[0])) replaced = now;
      assert.ok(i < 2000, "no replacement worker after 2000 requests");
    }
    assert.ok(replaced.includes(workers[1]), "the other worker was left alone");

    // Kill the primary: the workers notice their IPC channel close and exit, freeing the port.
    process.kill(gateway.pid, "SIGKILL");
    for (const pid of replaced) {
      await until(`worker ${pid} to exit after its primary`, async () => !(await alive(pid)));
    }
    await until("the port to be free", () => portIsFree(port));
  });
});
