import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { ephemeralLow, freePort } from "./free-port.ts";

test("a free port is below the kernel's ephemeral range, above the agent's instance ports, and can be bound", async () => {
  const low = ephemeralLow();
  for (const host of ["127.0.0.1", "0.0.0.0"]) {
    const port = await freePort(host);
    if (low - 30000 >= 100) assert.ok(port >= 30000 && port < low, `${port} outside 30000–${low - 1}`);
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, resolve);
    });
    await new Promise((resolve) => server.close(resolve));
  }
});
