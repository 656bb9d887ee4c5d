// How DockerApi reads the engine's answers, against a stand-in engine on a unix socket (logic only; the
// real engine is docker-driver.test.ts's).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { HerdError } from "../common/errors.ts";
import { DockerApi } from "./docker-api.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-docker-api-"));
const socket = join(dir, "docker.sock");
// What the engine answers a stop: 304 when the container had already stopped (it exited as herd up stopped it).
const engine = createServer((req, res) => {
  if (req.url?.endsWith("/containers/gone/stop")) res.writeHead(304).end();
  else if (req.url?.endsWith("/containers/broken/stop"))
    res.writeHead(500).end('{"message":"engine trouble"}');
  else res.writeHead(204).end();
});
await new Promise<void>((resolve) => engine.listen(socket, resolve));
after(() => {
  engine.close();
  rmSync(dir, { recursive: true, force: true });
});

test("304 (already so: a stop of a stopped container) is no error; a 500 is, with the engine's message", async () => {
  const api = new DockerApi(socket);
  assert.equal(await api.text({ method: "POST", path: "/containers/gone/stop" }), "");
  assert.equal(await api.text({ method: "POST", path: "/containers/running/stop" }), "");
  await assert.rejects(api.text({ method: "POST", path: "/containers/broken/stop" }), (err: unknown) => {
    assert.ok(err instanceof HerdError);
    assert.match(err.message, /engine trouble/);
    return true;
  });
});
