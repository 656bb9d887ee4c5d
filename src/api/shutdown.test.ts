// Closing the control plane ends its long streams (a gateway's watch, a
// deploy log), so a close never waits on a client that keeps following.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { startServer } from "../daemons/control-plane.ts";

test("close() ends an open watch stream instead of waiting for its client", async () => {
  const dir = mkdtempSync(join(tmpdir(), "herd-shutdown-"));
  try {
    const server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
    let answered!: (status: number | undefined) => void;
    const open = new Promise<number | undefined>((r) => {
      answered = r;
    });
    const ended = new Promise<void>((resolve, reject) => {
      const req = http.get(
        `${server.url}/api/v1/watch`,
        { headers: { authorization: `Bearer ${server.adminToken}` } },
        (res) => {
          answered(res.statusCode);
          res.resume();
          res.on("end", () => resolve());
          res.on("error", () => resolve());
        },
      );
      req.on("error", reject);
    });
    // The stream is open (its answer arrived), however long that took on a busy machine; a close
    // before it is the next test's case.
    assert.equal(await open, 200);
    const started = Date.now();
    await server.close();
    await ended;
    assert.ok(Date.now() - started < 5000, `closed in ${Date.now() - started} ms`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a watch that reaches the server while it closes ends too (close() does not wait for it)", async () => {
  // close() at several moments after the request is sent: some land before the handler starts
  // its stream, where an abort already fired must still end the stream.
  for (const delay of [0, 2, 4, 6, 8, 10, 15, 20, 30]) {
    const dir = mkdtempSync(join(tmpdir(), "herd-shutdown-"));
    try {
      const server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
      const ended = new Promise<void>((resolve) => {
        const req = http.get(
          `${server.url}/api/v1/watch`,
          { headers: { authorization: `Bearer ${server.adminToken}` } },
          (res) => {
            res.resume();
            res.on("close", () => resolve());
          },
        );
        req.on("error", () => resolve());
      });
      await new Promise((r) => setTimeout(r, delay));
      const started = Date.now();
      const closed = await Promise.race([
        server
          .close()
          .then(() => ended)
          .then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 5000).unref()),
      ]);
      assert.ok(closed, `close() ${delay} ms after the request did not end within 5 s`);
      assert.ok(Date.now() - started < 5000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});
