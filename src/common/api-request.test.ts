import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ensureApiTls } from "../api/tls.ts";
import { apiRequest } from "./api-request.ts";

test("answers with status, headers and body; a kept connection serves the next request", async (t) => {
  const sockets = new Set<unknown>();
  const server = createServer((req, res) => {
    sockets.add(req.socket);
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      if (req.url === "/missing") {
        res.writeHead(404, { "content-type": "application/json" }).end('{"code":"not_found"}');
        return;
      }
      res.writeHead(200, { "content-type": "application/json", "retry-after": "3" });
      res.end(JSON.stringify({ method: req.method, body, auth: req.headers.authorization }));
    });
  }).listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const posted = await apiRequest(`${url}/x`, {
    method: "POST",
    headers: { authorization: "Bearer t", "content-type": "application/json" },
    body: '{"a":1}',
  });
  assert.equal(posted.status, 200);
  assert.equal(posted.statusText, "OK");
  assert.ok(posted.ok);
  assert.equal(posted.headers["retry-after"], "3");
  assert.deepEqual(await posted.json(), { method: "POST", body: '{"a":1}', auth: "Bearer t" });

  const missing = await apiRequest(`${url}/missing`);
  assert.equal(missing.status, 404);
  assert.equal(missing.ok, false);
  assert.equal(missing.statusText, "Not Found");
  missing.cancel();
  await once(missing.body, "end");
  const again = await apiRequest(`${url}/y`);
  assert.equal(JSON.parse(await again.text()).method, "GET");
  assert.equal(sockets.size, 1, "one kept connection for the three requests");
});

test("a request that outlives its signal fails with the signal's reason", async (t) => {
  const server = createServer(() => {}).listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  await assert.rejects(apiRequest(url, { signal: AbortSignal.timeout(100) }), { name: "TimeoutError" });
});

test("a server that is not there is an error naming why", async () => {
  await assert.rejects(apiRequest("http://127.0.0.1:9/"), /ECONNREFUSED/);
});

test("the body as a stream: chunks as they come, before the answer ends", async (t) => {
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    res.write('{"n":1}\n');
    // The second line only once the client has read the first: the body is read as it arrives.
    server.once("second", () => res.end('{"n":2}\n'));
  }).listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const res = await apiRequest(`http://127.0.0.1:${(server.address() as AddressInfo).port}/watch`);
  const lines: string[] = [];
  for await (const chunk of res.body) {
    lines.push(...String(chunk).trim().split("\n"));
    if (lines.length === 1) server.emit("second");
  }
  assert.deepEqual(lines, ['{"n":1}', '{"n":2}']);
});

test("https: trusts the CA it is given, and refuses a certificate no trusted CA signed", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-api-request-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tls = await ensureApiTls(dir, "127.0.0.1");
  const server = createHttpsServer({ cert: tls.cert, key: tls.key }, (_req, res) => res.end("secure")).listen(
    0,
    "127.0.0.1",
  );
  await new Promise((r) => server.once("listening", r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  assert.equal(await (await apiRequest(url, { ca: tls.ca })).text(), "secure");
  await assert.rejects(apiRequest(url), { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
});

test("a URL that is neither http nor https is refused", async () => {
  await assert.rejects(apiRequest("ftp://127.0.0.1/x"), /only http and https are supported/);
});
