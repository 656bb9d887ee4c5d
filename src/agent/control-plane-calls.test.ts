/**
 * The agent's registry calls against a real HTTP server: what they send, a
 * failure naming the call and the status, and an answer read whole (an unread
 * one would hold its keep-alive connection).
 */

import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { serversOf } from "../common/server-list.ts";
import type { DesiredInstance } from "../model/protocol.ts";
import { ControlPlaneCalls } from "./control-plane-calls.ts";
import { waitFor } from "./driver.case.test.ts";

test("registry calls: reported images, kept images and credentials; a refusal names the call", async (t) => {
  const seen: { path: string; body: string; port: number; auth: string | undefined }[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      seen.push({
        path: req.url ?? "",
        body,
        port: req.socket.remotePort ?? 0,
        auth: req.headers.authorization,
      });
      res.setHeader("content-type", "application/json");
      if (req.url === "/api/v1/registry/images")
        res.end(JSON.stringify({ recorded: true, pad: "x".repeat(64 * 1024) }));
      else if (req.url === "/api/v1/registry/kept")
        res.end(JSON.stringify({ digests: ["sha256:aa"], images: [] }));
      else {
        res.statusCode = 400;
        res.end(JSON.stringify({ error: "body/serve must match pattern" }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const calls = new ControlPlaneCalls(serversOf(url), undefined, "tok", silentLogger);

  const d = { id: "i1", tenant: "a", app: "shop", release: 2, service: "web" } as DesiredInstance;
  calls.reportImage(d, "reg:5000/herd-build@sha256:bb");
  await waitFor(() => seen.length === 1 || undefined, "the image report", 10_000);
  assert.deepEqual(JSON.parse(seen[0].body), {
    tenant: "a",
    app: "shop",
    release: 2,
    service: "web",
    image: "reg:5000/herd-build@sha256:bb",
  });
  assert.equal(seen[0].auth, "Bearer tok");

  // The report's answer was read: the next call goes on the same connection.
  assert.deepEqual(await calls.keptImages(), { digests: ["sha256:aa"], images: [] });
  assert.equal(seen[1].port, seen[0].port);

  await assert.rejects(
    calls.registryCredentials("bad"),
    /POST \/registry\/credentials answered 400: .*serve must match/,
  );
  assert.deepEqual(JSON.parse(seen[2].body), { serve: "bad" });
});
