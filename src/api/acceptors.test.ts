import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type net from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { startServer } from "../daemons/control-plane.ts";
import { ACCEPTORS, addAcceptors, portFree } from "./acceptors.ts";

/**
 * Connections `server` takes while the event loop runs `turns` turns of 30 ms
 * of work each. The 40 connections are made first, by a child process while
 * this one's loop is held (spawnSync): all are in the kernel's accept queues
 * before the first turn, however late a busy machine completes a handshake.
 */
async function acceptedInBusyTurns(server: http.Server, port: number, turns: number): Promise<number> {
  let accepted = 0;
  server.on("connection", (socket: net.Socket) => {
    accepted++;
    socket.on("error", () => {});
  });
  const made = spawnSync(
    process.execPath,
    [
      "-e",
      `const net = require("node:net"); let n = 0;
       for (let i = 0; i < 40; i++) net.connect(${port}, "127.0.0.1", () => { if (++n === 40) process.exit(0); });
       setTimeout(() => { console.error(n + " of 40 connected"); process.exit(1); }, 20000);`,
    ],
    { encoding: "utf8" },
  );
  assert.equal(made.status, 0, `the connections were not made: ${made.stderr}`);
  for (let n = 0; n < turns; n++) {
    await new Promise((r) => setImmediate(r));
    const until = performance.now() + 30;
    while (performance.now() < until);
  }
  return accepted;
}

async function listening(reusePort: boolean): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((_req, res) => res.end("ok"));
  await new Promise<void>((r) => server.listen({ port: 0, host: "127.0.0.1", reusePort }, r));
  return { server, port: (server.address() as AddressInfo).port };
}

test("several acceptors take many new connections per busy turn of the loop, one socket one per turn", async () => {
  const one = await listening(false);
  const single = await acceptedInBusyTurns(one.server, one.port, 12).finally(() => one.server.close());
  const many = await listening(true);
  const close = await addAcceptors(many.server, "127.0.0.1", many.port, (err) => assert.fail(err));
  let spread: number;
  try {
    spread = await acceptedInBusyTurns(many.server, many.port, 12);
  } finally {
    close();
    many.server.close();
  }
  assert.ok(single <= 14, `one socket: ${single} connections in 12 turns`);
  assert.equal(spread, 40, `${ACCEPTORS} sockets: ${spread} of 40 connections in 12 turns`);
});

test("the acceptors' connections are the HTTP server's, and a port in use is seen as such", async () => {
  const { server, port } = await listening(true);
  const close = await addAcceptors(server, "127.0.0.1", port, (err) => assert.fail(err));
  try {
    const agent = new http.Agent({ keepAlive: false });
    for (let n = 0; n < 20; n++) {
      const body = await new Promise<string>((resolve, reject) =>
        http
          .get({ host: "127.0.0.1", port, path: "/", agent }, (res) => {
            let text = "";
            res.on("data", (c) => (text += c));
            res.on("end", () => resolve(text));
          })
          .on("error", reject),
      );
      assert.equal(body, "ok");
    }
    assert.equal(await portFree("127.0.0.1", port), false);
  } finally {
    close();
    server.close();
  }
  assert.equal(await portFree("127.0.0.1", port), true, "free again once all closed");
});

test("a second control plane on a port in use is refused, not let in beside the first", async () => {
  const dir = mkdtempSync(join(tmpdir(), "herd-acceptors-"));
  const first = await startServer({ dataDir: join(dir, "a"), port: 0, logger: silentLogger });
  try {
    const port = new URL(first.url).port;
    await assert.rejects(
      startServer({ dataDir: join(dir, "b"), port: Number(port), logger: silentLogger }),
      (err: Error) => err.message === `port ${port} is in use by another program: stop it or pass --port`,
    );
  } finally {
    await first.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
