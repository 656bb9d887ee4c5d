// The response's end: a body with a Content-Length ends with its last bytes
// (exchange.ts onData), one without (chunked) at the upstream's completion.
// Either way the client gets the whole body, in pieces as they come, on a
// connection it can reuse, and the request is counted as the upstream's answer.

import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import * as metrics from "./metrics.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { startUpstream, type TestUpstream, testInstance, testNode, testService } from "./testing.ts";

const PIECES = ["first piece,", "second piece,", "last piece"];
const BODY = PIECES.join("");

/** GETs `path` on a keep-alive agent; resolves with the status, the headers, the body and when each piece came. */
function get(
  port: number,
  path: string,
  agent: http.Agent,
  method = "GET",
): Promise<{
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  pieces: number;
  reused: boolean;
}> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path, method, headers: { host: "shop.test" }, agent },
      (res) => {
        let body = "";
        let pieces = 0;
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          body += chunk;
          pieces++;
        });
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            pieces,
            reused: req.reusedSocket,
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("the end of a relayed body", () => {
  let proxy: GatewayProxy;
  let port: number;
  let upstream: TestUpstream;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

  before(async () => {
    upstream = await startUpstream((req, res) => {
      const sized = req.url?.startsWith("/sized") ?? false;
      res.writeHead(200, {
        "content-type": "text/plain",
        ...(sized ? { "content-length": Buffer.byteLength(BODY) } : {}),
      });
      if (req.method === "HEAD") {
        res.end();
        return;
      }
      // Each piece on its own, 40 ms apart: the gateway must pass each on as it comes.
      let i = 0;
      const next = () => {
        if (i === PIECES.length - 1) res.end(PIECES[i]);
        else {
          res.write(PIECES[i++]);
          setTimeout(next, 40);
        }
      };
      next();
    });
    proxy = new GatewayProxy({ logger: silentLogger });
    port = await proxy.listen(0, "127.0.0.1");
    proxy.table = buildRouteTable(
      {
        services: [testService("default", "shop", "web", [{ host: "shop.test" }])],
        instances: [testInstance("web0", { app: "shop", service: "web" }, "local", upstream.port)],
        nodes: [testNode("local", "127.0.0.1")],
      },
      1,
    );
  });

  after(async () => {
    agent.destroy();
    await proxy.close();
    await upstream.close();
  });

  test("a body with a Content-Length arrives whole, piece by piece, and the connection stays open", async () => {
    const first = await get(port, "/sized", agent);
    assert.equal(first.status, 200);
    assert.equal(first.body, BODY);
    assert.equal(first.headers["content-length"], String(Buffer.byteLength(BODY)));
    assert.equal(first.headers["transfer-encoding"], undefined);
    assert.ok(first.pieces >= PIECES.length, `the pieces came in ${first.pieces} reads, not one by one`);
    const second = await get(port, "/sized", agent);
    assert.equal(second.body, BODY);
    assert.ok(second.reused, "the client's connection was not kept after a body ended with its last bytes");
  });

  test("a chunked body arrives whole and piece by piece", async () => {
    const r = await get(port, "/chunked", agent);
    assert.equal(r.status, 200);
    assert.equal(r.body, BODY);
    assert.equal(r.headers["transfer-encoding"], "chunked");
    assert.ok(r.pieces >= PIECES.length);
  });

  test("a HEAD answer with a Content-Length and no body ends", async () => {
    const r = await get(port, "/sized", agent, "HEAD");
    assert.equal(r.status, 200);
    assert.equal(r.body, "");
    assert.equal(r.headers["content-length"], String(Buffer.byteLength(BODY)));
  });

  test("each is counted once, as the upstream's 200", () => {
    const [route] = [...proxy.table.entries()];
    const series = route.stats.home;
    assert.equal(series.count, 4);
    assert.deepEqual(series.keys, [200 * metrics.OUTCOME_SLOTS + metrics.UPSTREAM]);
  });
});
