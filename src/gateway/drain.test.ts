import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { drainServers } from "./drain.ts";

/** A server whose /slow answers only when `release()` is called. */
async function server() {
  let release = () => {};
  const released = new Promise<void>((r) => {
    release = r;
  });
  const s = http.createServer((req, res) => {
    if (req.url === "/slow") void released.then(() => res.end("slow"));
    else res.end("fast");
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return { s, port: (s.address() as AddressInfo).port, release };
}

function get(port: number, path: string, agent: http.Agent) {
  return new Promise<{ body: string; connection?: string }>((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path, agent }, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ body, connection: res.headers.connection }));
      })
      .on("error", reject);
  });
}

test("a drain stops accepting, finishes what is in flight, answers later requests with Connection: close", async (t) => {
  const { s, port, release } = await server();
  // Two open connections (one agent each): one idle after a first request, one busy with /slow.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const busy = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => {
    agent.destroy();
    busy.destroy();
    s.closeAllConnections();
    s.close();
  });
  const idle = await get(port, "/", agent);
  assert.equal(idle.connection, "keep-alive");
  const slow = get(port, "/slow", busy);
  await new Promise((r) => setTimeout(r, 50));

  const started = Date.now();
  const drained = drainServers([s], 5_000, 300);
  await new Promise((r) => setTimeout(r, 50));
  // A new connection is refused: the listening socket is closed.
  await assert.rejects(get(port, "/", new http.Agent()), /ECONNREFUSED/);
  // The idle connection still takes a request (a client may have been writing it), answered with close.
  const onIdle = await get(port, "/", agent);
  assert.deepEqual(onIdle, { body: "fast", connection: "close" });
  release();
  // In flight before the drain: answered as it began (keep-alive); its next request gets the close.
  assert.deepEqual(await slow, { body: "slow", connection: "keep-alive" });
  assert.deepEqual(await get(port, "/", busy), { body: "fast", connection: "close" });
  await drained;
  assert.ok(Date.now() - started < 4_000, "ended when the connections did, not at the timeout");
  assert.equal(s.listening, false);
});

test("a drain ends at its timeout when a request never finishes", async (t) => {
  const { s, port, release } = await server();
  const agent = new http.Agent({ keepAlive: true });
  t.after(() => {
    release();
    agent.destroy();
    s.closeAllConnections();
  });
  const slow = get(port, "/slow", agent).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 50));
  const started = Date.now();
  await drainServers([s], 400, 100);
  assert.ok(Date.now() - started >= 390);
  s.closeAllConnections();
  await slow;
});
