import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { ephemeralLow, freePort, pickRanges } from "./free-port.ts";

test("a free port is below the kernel's ephemeral range, off the agent's instance ports, and can be bound", async () => {
  const low = ephemeralLow();
  const ranges = pickRanges(low);
  for (const host of ["127.0.0.1", "0.0.0.0"]) {
    const port = await freePort(host);
    if (ranges.length > 0)
      assert.ok(
        ranges.some(([a, b]) => port >= a && port <= b),
        `${port} outside ${JSON.stringify(ranges)}`,
      );
    assert.ok(port < 20000 || port > 29999, `${port} is an agent's instance port`);
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, resolve);
    });
    await new Promise((resolve) => server.close(resolve));
  }
});

test("the ranges: 10000–19999 and 30000 up to the ephemeral range; none that is too small", () => {
  assert.deepEqual(pickRanges(32768), [
    [10000, 19999],
    [30000, 32767],
  ]);
  assert.deepEqual(pickRanges(30050), [[10000, 19999]]);
  assert.deepEqual(pickRanges(15000), [[10000, 14999]]);
  assert.deepEqual(pickRanges(1024), []);
});

test("several ports asked for before any is bound are all different", async () => {
  const ports = await Promise.all(Array.from({ length: 200 }, () => freePort()));
  assert.equal(new Set(ports).size, ports.length);
});
