// Rate limits of a gateway with worker processes (herd gateway --workers 2) hold for the gateway
// as a whole (rate-lease.ts): keep-alive clients all on one worker get the full rate, and
// clients on both workers together get no more than it.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, type TestContext, test } from "node:test";
import { type GatewayChild, spawnGatewayChild } from "./cluster-child.ts";
import { TokenBucket } from "./policies/token-bucket.ts";
import {
  childPids,
  killAll,
  putShop,
  request,
  startTestControlPlane,
  startUpstream,
  type TestControlPlane,
  type TestUpstream,
} from "./testing.ts";

const TOKEN = "cluster-rate-limit-token";
const RATE = 20;
const BURST = 20;
const RUN_MS = 3_000;
/** How long the clients keep asking, at most, for a first 429 on a starved machine. */
const LONGEST_MS = 15_000;

/** A client on its own keep-alive connection. */
class Client {
  readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  readonly port: number;
  constructor(port: number) {
    this.port = port;
  }

  get(host: string): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
    return new Promise((resolve, reject) => {
      http
        .get(
          { host: "127.0.0.1", port: this.port, path: "/", headers: { host }, agent: this.agent },
          (res) => {
            res.resume();
            res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
          },
        )
        .on("error", reject);
    });
  }

  /**
   * Requests one after another until `untilMs` (performance.now()), and past it until some client
   * sharing `limited` was refused (a starved machine can answer fewer requests than the rate; at
   * most LONGEST_MS): how many were admitted and when each request was sent (performance.now()).
   * The 429s' headers go into `limited`.
   */
  async hammer(
    host: string,
    untilMs: number,
    limited: http.IncomingHttpHeaders[],
  ): Promise<{ ok: number; sentAt: number[] }> {
    let ok = 0;
    const sentAt: number[] = [];
    const longest = untilMs - RUN_MS + LONGEST_MS;
    for (;;) {
      const now = performance.now();
      if (now >= untilMs && (limited.length > 0 || now >= longest)) break;
      sentAt.push(performance.now());
      const reply = await this.get(host);
      if (reply.status === 200) ok++;
      else if (reply.status === 429) limited.push(reply.headers);
      else assert.fail(`unexpected status ${reply.status}`);
    }
    return { ok, sentAt };
  }
}

/**
 * The gateway's workers together admitted what one bucket of the route's rate would have: never
 * more than its burst plus its rate over the time (+10 %), and within ±10 % (at least 3) of a
 * bucket fed the moments the requests were sent. On a busy machine the clients stall now and
 * then; a bucket full meanwhile keeps only its burst, so the stalls are not the limiter's doing.
 */
function assertNearRate(t: TestContext, admitted: number, start: number, sentAt: number[]): void {
  const elapsedMs = performance.now() - start;
  const most = BURST + (RATE * elapsedMs) / 1000;
  const bucket = new TokenBucket(RATE, BURST, start);
  const expected = [...sentAt].sort((a, b) => a - b).filter((at) => bucket.take(at).ok).length;
  t.diagnostic(
    `admitted ${admitted} of ${sentAt.length} in ${Math.round(elapsedMs)} ms; at most ${most.toFixed(1)}; a bucket fed the requests' moments: ${expected}`,
  );
  assert.ok(
    admitted <= most * 1.1,
    `admitted ${admitted} in ${Math.round(elapsedMs)} ms, at most ${most.toFixed(1)} allowed`,
  );
  assert.ok(
    Math.abs(admitted - expected) <= Math.max(3, expected * 0.1),
    `admitted ${admitted}; a bucket of the route's rate would have admitted ${expected} of the ${sentAt.length} asked`,
  );
}

describe("rate limits with worker processes (herd gateway --workers 2)", () => {
  let dataDir: string;
  let controlPlane: TestControlPlane;
  let upstream: TestUpstream;
  let gateway: GatewayChild;
  const clients: Client[] = [];
  /** Every pid this test saw, killed at the end whatever happened. */
  const pids = new Set<number>();

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "herd-gateway-cluster-rate-"));
    controlPlane = await startTestControlPlane(TOKEN);
    upstream = await startUpstream((_req, res) => res.end("ok"));
    putShop(controlPlane, upstream.port, [
      { host: "route.test", rateLimit: { rate: RATE, burst: BURST, per: "route" } },
      { host: "ip.test", rateLimit: { rate: RATE, burst: BURST, per: "ip" } },
      { host: "free.test" },
    ]);
    gateway = await spawnGatewayChild({
      server: controlPlane.url,
      token: TOKEN,
      port: 0,
      host: "127.0.0.1",
      dataDir,
      workers: 2,
      metricsPort: "off",
    });
    pids.add(gateway.pid);
    for (const pid of childPids(gateway.pid)) pids.add(pid);
    // Every worker listens only once it has the table, so any answer means all routes are there.
    assert.equal((await request(gateway.port, "free.test", "/")).status, 200);
  });

  after(async () => {
    for (const client of clients) client.agent.destroy();
    killAll(pids);
    await controlPlane.close();
    await upstream.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test("keep-alive clients on one worker are admitted the route's full rate, not a worker's share", async (t) => {
    const [, other] = childPids(gateway.pid);
    assert.ok(other, "two workers");
    // Four connections, all on one worker: the other is stopped while they open (the workers share
    // the listening socket, and a stopped one accepts nothing). Four, so that together they ask for
    // more than the rate even when a busy machine slows each one down.
    const mine = Array.from({ length: 4 }, () => new Client(gateway.port));
    clients.push(...mine);
    process.kill(other, "SIGSTOP");
    try {
      for (const client of mine)
        assert.equal((await client.get("free.test")).status, 200, "the connection is open");
    } finally {
      process.kill(other, "SIGCONT");
    }
    const start = performance.now();
    const limited: http.IncomingHttpHeaders[] = [];
    const runs = await Promise.all(
      mine.map((client) => client.hammer("route.test", start + RUN_MS, limited)),
    );
    const ok = runs.reduce((n, r) => n + r.ok, 0);
    assertNearRate(
      t,
      ok,
      start,
      runs.flatMap((r) => r.sentAt),
    );
    const sent = runs.reduce((n, r) => n + r.sentAt.length, 0);
    assert.ok(limited.length > 0, `the clients asked for more than the rate: ${sent} sent, ${ok} admitted`);
    // The 429 states the gateway's limit, not a worker's share of it.
    const headers = limited[0] ?? {};
    assert.match(String(headers.ratelimit), new RegExp(`^limit=${BURST}, remaining=0, reset=\\d+$`));
    assert.match(String(headers["ratelimit-policy"]), new RegExp(`^${BURST};w=1$`));
    assert.match(String(headers["retry-after"]), /^\d+$/);
  });

  test("clients on both workers share one bucket per client address", async (t) => {
    const [a, b] = childPids(gateway.pid);
    assert.ok(a && b, "two workers");
    // A stopped worker accepts nothing (they share the listening socket): each client's connection
    // opens on a known worker, the first on b, the second on a.
    const one = new Client(gateway.port);
    const two = new Client(gateway.port);
    clients.push(one, two);
    for (const [stopped, client] of [
      [a, one],
      [b, two],
    ] as const) {
      process.kill(stopped, "SIGSTOP");
      try {
        assert.equal((await client.get("free.test")).status, 200);
      } finally {
        process.kill(stopped, "SIGCONT");
      }
    }
    const limited: http.IncomingHttpHeaders[] = [];
    const start = performance.now();
    const [first, second] = await Promise.all([
      one.hammer("ip.test", start + RUN_MS, limited),
      two.hammer("ip.test", start + RUN_MS, limited),
    ]);
    assertNearRate(t, first.ok + second.ok, start, [...first.sentAt, ...second.sentAt]);
    assert.ok(first.ok > 0 && second.ok > 0, `both were admitted some: ${first.ok} and ${second.ok}`);
    assert.ok(limited.length > 0, "together they asked for more than the rate");
  });
});
