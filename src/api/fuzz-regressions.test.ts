// What the fuzzer found, fixed, and kept fixed: each test is one finding.

import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-fuzz-regressions-"));
before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Writes raw bytes to the server and returns what it answers before closing. */
function raw(text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(server.port, "127.0.0.1", () => socket.write(text));
    let got = "";
    socket.on("data", (d) => {
      got += d.toString();
    });
    socket.on("close", () => resolve(got));
    socket.on("error", reject);
  });
}

test("headers over 16 KiB (a long query string) are a 431 with the JSON error shape", async () => {
  const res = await fetch(`${server.url}/api/v1/apps?tenant=${"x".repeat(70_000)}`, {
    headers: { authorization: `Bearer ${server.adminToken}` },
  });
  assert.equal(res.status, 431);
  const body = (await res.json()) as { code: string; message: string };
  assert.equal(body.code, "too_large");
  assert.match(body.message, /16 KiB/);
});

test("a malformed request line is a 400 with the JSON error shape", async () => {
  const reply = await raw("GET /api/v1/apps HTTP/9.9 junk\r\n\r\n");
  assert.match(reply, /^HTTP\/1\.1 400 /);
  const body = JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4));
  assert.equal(body.code, "invalid");
});

test("a deploy whose body is not gzip is a 400 before any app, deploy or artifact exists", async () => {
  for (const junk of [Buffer.alloc(0), Buffer.from("not a tarball"), Buffer.from([0x1f, 0x8b])]) {
    const res = await apiCall(server, "POST", "/apps/junk/deploys", junk, {
      contentType: "application/gzip",
    });
    assert.equal(res.status, 400);
    assert.equal(res.body.code, "invalid");
    assert.equal(res.body.details[0].field, "body");
  }
  assert.equal((await apiCall(server, "GET", "/apps/junk")).status, 404);
  assert.equal((await server.store.list("deploy")).items.length, 0);
  const stored = join(dir, "artifacts", "sha256");
  const files = (() => {
    try {
      return readdirSync(stored, { recursive: true }).filter((f) => String(f).endsWith(".tar.gz"));
    } catch {
      return [];
    }
  })();
  assert.deepEqual(files, []);
});

test("numbers too big for a double (1e309, Infinity) are a 400 naming the field, not a 500", async () => {
  for (const path of ["/audit?limit=1e309", "/events?limit=1e309", "/logs?tail=-1e400"]) {
    const res = await apiCall(server, "GET", path);
    assert.equal(res.status, 400, path);
    assert.match(res.body.details[0].field, /^querystring\.(limit|tail)$/, path);
  }
  const quota = await apiCall(server, "PUT", "/tenants/default/quota", '{"units": 1e309}', {
    contentType: "application/json",
  });
  assert.equal(quota.status, 400);
  assert.equal(quota.body.code, "invalid");
});

test("maps with patterned keys refuse other keys: receiver headers, rule labels, scrape target labels", async () => {
  // A header name the pattern refuses, with a number for its value, was a 500 from the secret store.
  const receiver = await apiCall(server, "PUT", "/alerts/receivers/hook", {
    url: "http://127.0.0.1:1/hook",
    headers: { "not a header": 1e308 },
  });
  assert.equal(receiver.status, 400);
  assert.equal(receiver.body.code, "invalid");
  assert.match(JSON.stringify(receiver.body.details), /headers/);
  const rule = await apiCall(server, "PUT", "/alerts/rules/r1", { expr: "up", labels: { "a b": 1 } });
  assert.equal(rule.status, 400);
  assert.match(JSON.stringify(rule.body.details), /labels/);
  const target = await apiCall(server, "PUT", "/metrics/targets/t1", {
    url: "http://127.0.0.1:1/metrics",
    labels: { "a-b": 1 },
  });
  assert.equal(target.status, 400);
  assert.match(JSON.stringify(target.body.details), /labels/);
  // Keys that match still pass.
  const good = await apiCall(server, "PUT", "/alerts/receivers/hook", {
    url: "http://127.0.0.1:1/hook",
    headers: { "X-Token": "v" },
  });
  assert.equal(good.status, 201);
});
