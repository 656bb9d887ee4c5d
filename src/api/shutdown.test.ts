// Closing the control plane ends its long streams (a gateway's watch, a
// deploy log), so a close never waits on a client that keeps following.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { startServer } from "./server.ts";

test("close() ends an open watch stream instead of waiting for its client", async () => {
  const dir = mkdtempSync(join(tmpdir(), "herd-shutdown-"));
  try {
    const server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
    const ended = new Promise<void>((resolve, reject) => {
      const req = http.get(
        `${server.url}/api/v1/watch`,
        { headers: { authorization: `Bearer ${server.adminToken}` } },
        (res) => {
          assert.equal(res.statusCode, 200);
          res.resume();
          res.on("end", () => resolve());
          res.on("error", () => resolve());
        },
      );
      req.on("error", reject);
    });
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await server.close();
    await ended;
    assert.ok(Date.now() - started < 5000, `closed in ${Date.now() - started} ms`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
