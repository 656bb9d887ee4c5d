import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { test } from "node:test";
import { isCode } from "./errors.ts";
import { parseServers, ServerList } from "./server-list.ts";

/** A server that answers every request with `status` (and a herd-leader header when given); counts what it got. */
async function fake(
  status: number,
  leader?: () => string,
): Promise<{ url: string; hits: () => number; server: Server }> {
  let hits = 0;
  const server = createServer((_req, res) => {
    hits++;
    if (leader) res.setHeader("herd-leader", leader());
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ status }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}`, hits: () => hits, server };
}

/** A URL nothing listens on. */
async function deadUrl(): Promise<string> {
  const s = await fake(200);
  await new Promise((r) => s.server.close(r));
  return s.url;
}

test("server list: parses a comma list and names a bad entry", () => {
  assert.deepEqual(parseServers("http://a:1/, https://b:2"), ["http://a:1", "https://b:2"]);
  assert.throws(
    () => parseServers(""),
    (err) => isCode(err, "invalid"),
  );
  assert.throws(
    () => parseServers("http://a:1,ftp://b"),
    (err) => isCode(err, "invalid") && /ftp:\/\/b/.test(String(err)),
  );
});

test("server list: a server that is away is skipped, and the move sticks", async () => {
  const dead = await deadUrl();
  const live = await fake(200);
  try {
    const list = new ServerList(`${dead},${live.url}`);
    const res = await list.request("/api/v1/x");
    assert.equal(res.status, 200);
    await res.text();
    assert.equal(list.url, live.url);
    (await list.request("/api/v1/x")).cancel();
    assert.equal(live.hits(), 2);
  } finally {
    live.server.close();
  }
});

test("server list: a follower's 503 with herd-leader moves to the leader; no leader anywhere returns the 503", async () => {
  const leader = await fake(200);
  const follower = await fake(503, () => leader.url);
  const lost = await fake(503);
  try {
    const list = new ServerList(follower.url);
    const res = await list.request("/api/v1/nodes/n/heartbeat", { method: "POST", body: "{}" });
    assert.equal(res.status, 200);
    res.cancel();
    assert.equal(list.url, leader.url, "the leader joined the list and is current");
    const none = new ServerList(`${lost.url},${await deadUrl()}`);
    const answer = await none.request("/api/v1/x");
    assert.equal(answer.status, 503);
    answer.cancel();
    const allDead = new ServerList(`${await deadUrl()},${await deadUrl()}`);
    await assert.rejects(allDead.request("/api/v1/x"), /ECONNREFUSED/);
  } finally {
    leader.server.close();
    follower.server.close();
    lost.server.close();
  }
});

test("server list: a server that lets the deadline pass is left for the next request", async () => {
  const { createServer: tcp } = await import("node:net");
  // Accepts connections and never answers, like a SIGSTOPped server.
  const silent = tcp(() => {});
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const address = silent.address();
  const silentUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  const live = await fake(200);
  try {
    const list = new ServerList(`${silentUrl},${live.url}`);
    await assert.rejects(list.request("/api/v1/x", { signal: AbortSignal.timeout(200) }));
    assert.equal(list.url, live.url);
    (await list.request("/api/v1/x")).cancel();
  } finally {
    silent.close();
    live.server.close();
  }
});

test("server list: a hedged request held by a silent server is answered by the next, which is used from then on", async () => {
  const { createServer: tcp } = await import("node:net");
  const held: import("node:net").Socket[] = [];
  let closed = 0;
  const silent = tcp((socket) => {
    held.push(socket);
    socket.resume().on("close", () => closed++);
  });
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const address = silent.address();
  const silentUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  const leader = await fake(200);
  const follower = await fake(503, () => leader.url);
  try {
    // The silent server is current: after 100 ms the follower gets the heartbeat too and names the leader.
    const list = new ServerList(`${silentUrl},${follower.url}`);
    const started = Date.now();
    const res = await list.request(
      "/api/v1/nodes/n/heartbeat",
      { method: "POST", body: "{}", signal: AbortSignal.timeout(5000) },
      { hedge: { afterMs: 100, everyMs: 50 } },
    );
    assert.equal(res.status, 200);
    res.cancel();
    assert.ok(Date.now() - started < 2000, `answered after ${Date.now() - started} ms, not the deadline`);
    assert.equal(list.url, leader.url);
    assert.equal(follower.hits(), 1);
    // The held request was abandoned: its connection is closed by this side.
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(
      held.every((s) => s.destroyed || s.readableEnded),
      "the held request was not aborted",
    );
  } finally {
    for (const s of held) s.destroy();
    silent.close();
    leader.server.close();
    follower.server.close();
  }
});

test("server list: a hedged request: a follower's quick 503 naming the slow leader asked first does not beat the leader's answer", async () => {
  // A leader under load answers after 300 ms; the follower, asked after 100 ms, names it at once.
  let leaderHits = 0;
  const slow = createServer((_req, res) => {
    leaderHits++;
    setTimeout(() => res.writeHead(200, { "content-type": "application/json" }).end("{}"), 300);
  });
  await new Promise<void>((resolve) => slow.listen(0, "127.0.0.1", resolve));
  const address = slow.address();
  const leaderUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  const follower = await fake(503, () => `${leaderUrl}/`);
  try {
    const list = new ServerList(`${leaderUrl},${follower.url}`);
    const res = await list.request(
      "/api/v1/nodes/n/heartbeat",
      { method: "POST", body: "{}", signal: AbortSignal.timeout(5000) },
      { hedge: { afterMs: 100, everyMs: 50 } },
    );
    assert.equal(res.status, 200, "the follower's 503 was taken over the leader's answer");
    res.cancel();
    assert.equal(follower.hits(), 1, "the follower was asked too");
    assert.equal(leaderHits, 1);
    assert.equal(list.url, leaderUrl);
  } finally {
    slow.closeAllConnections();
    slow.close();
    follower.server.close();
  }
});
