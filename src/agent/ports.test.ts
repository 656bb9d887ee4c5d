import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { test } from "node:test";
import { freePort } from "./driver.case.test.ts";
import { isPortFree, PortAllocator, parsePortRange } from "./ports.ts";

async function listen(port: number, host: string): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return server;
}

/**
 * Three ports in a row that were all free, the middle one held by a server of this test's.
 * Searched below 32768, outside the kernel's range for port 0 and outgoing connections: in that
 * range, on a busy machine, other processes took base + 1 or base + 2 between two looks.
 */
async function threePorts(): Promise<{ base: number; held: Server }> {
  for (let tries = 0; tries < 100; tries++) {
    const base = 10_000 + Math.floor(Math.random() * 20_000);
    const servers: Server[] = [];
    try {
      for (const port of [base, base + 1, base + 2]) servers.push(await listen(port, "127.0.0.1"));
    } catch {
      for (const server of servers) server.close();
      continue;
    }
    const [first, held, last] = servers as [Server, Server, Server];
    await Promise.all([first, last].map((s) => new Promise((resolve) => s.close(resolve))));
    return { base, held };
  }
  throw new Error("no three free ports in a row between 10000 and 30002");
}

test("a port held on 127.0.0.1 or 0.0.0.0 is not free", async (t) => {
  const port = await freePort();
  assert.equal(await isPortFree(port), true);
  const loopback = await listen(port, "127.0.0.1");
  t.after(() => loopback.close());
  assert.equal(await isPortFree(port), false);
  loopback.close();
  const any = await listen(port, "0.0.0.0");
  t.after(() => any.close());
  assert.equal(await isPortFree(port), false);
});

test("allocate skips ports that are ours or held by others, and reuses released ones", async (t) => {
  const { base, held } = await threePorts();
  t.after(() => held.close());
  const range = { min: base, max: base + 2 };
  const ports = new PortAllocator(range);
  ports.reserve(base);
  const a = await ports.allocate();
  assert.ok(a !== base && a !== base + 1 && a >= range.min && a <= range.max, String(a));
  const both = await Promise.allSettled([ports.allocate(), ports.allocate()]);
  assert.ok(
    both.every((r) => r.status === "rejected"),
    "the range should be used up",
  );
  ports.release(a);
  assert.equal(await ports.allocate(), a);
});

test("--ports ranges: MIN-MAX within 1024-65535", () => {
  assert.deepEqual(parsePortRange("21000-21999"), { min: 21000, max: 21999 });
  assert.deepEqual(parsePortRange("30000-30000"), { min: 30000, max: 30000 });
  for (const bad of ["21000", "2000-1000", "80-90", "60000-70000", "a-b", "1-2-3", ""]) {
    assert.throws(() => parsePortRange(bad), /--ports must be MIN-MAX within 1024-65535/, bad);
  }
});
