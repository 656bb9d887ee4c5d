import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { freePort } from "../common/free-port.ts";
import { ApiClient, ApiError, readNdjson, withDetails } from "./api-client.ts";
import { sendJson, startTestApi, type TestApi } from "./test-api.ts";

describe("ApiClient", () => {
  let api: TestApi;
  let client: ApiClient;

  before(async () => {
    api = await startTestApi((req, res) => {
      if (req.url.startsWith("/api/v1/apps/bad")) {
        sendJson(res, 400, {
          code: "invalid",
          message: "invalid scale",
          details: [{ field: "services.web.instances", message: "must be >= 0", line: 7 }],
        });
      } else if (req.url.startsWith("/api/v1/gateway-error")) {
        res.writeHead(502).end("bad gateway");
      } else if (req.url.startsWith("/api/v1/stream")) {
        res.writeHead(200, { "content-type": "application/x-ndjson" });
        res.write('{"n":1}\n{"n"');
        setTimeout(() => res.end(':2}\n\n{"n":3}'), 20);
      } else if (req.url.startsWith("/api/v1/upload")) {
        sendJson(res, 202, { received: req.body.length, type: req.headers["content-type"] });
      } else {
        sendJson(res, 200, { method: req.method, url: req.url, auth: req.headers.authorization });
      }
    });
    client = new ApiClient({ url: `${api.url}/`, token: "t0k", tenant: "acme" });
  });
  after(() => api.close());

  it("sends the token and the tenant", async () => {
    const reply = await client.get<{ url: string; auth: string }>("/apps", { limit: 5, app: undefined });
    assert.equal(reply.url, "/api/v1/apps?limit=5&tenant=acme");
    assert.equal(reply.auth, "Bearer t0k");
    const posted = await client.post<{ method: string }>("/apps", { name: "x" });
    assert.equal(posted.method, "POST");
    assert.deepEqual(JSON.parse(api.requests.at(-1)!.body.toString()), { name: "x" });
  });

  it("turns an error reply into the API's message and one line per detail", async () => {
    await assert.rejects(client.post("/apps/bad/scale", {}), (err: unknown) => {
      assert.ok(err instanceof ApiError);
      assert.equal(err.status, 400);
      assert.equal(err.code, "invalid");
      assert.equal(err.message, "invalid scale\n  services.web.instances (line 7): must be >= 0");
      return true;
    });
  });

  it("reports a reply that is not the API's error shape by its status", async () => {
    await assert.rejects(client.get("/gateway-error"), { message: "HTTP 502 Bad Gateway: bad gateway" });
  });

  it("says the server is not running when the connection is refused", async () => {
    const port = await freePort();
    const down = new ApiClient({ url: `http://127.0.0.1:${port}`, token: "x" });
    await assert.rejects(down.get("/apps"), {
      message: `cannot reach the herd server at http://127.0.0.1:${port}: is \`herd up\` running?`,
    });
  });

  it("with several servers, a GET held by a frozen one is answered by the next, used from then on; a POST waits for the server in use", async () => {
    // Accepts connections and never answers, like a SIGSTOPped server.
    const held: import("node:net").Socket[] = [];
    const frozen = createServer((socket) => void held.push(socket.resume()));
    await new Promise<void>((resolve) => frozen.listen(0, "127.0.0.1", resolve));
    const frozenUrl = `http://127.0.0.1:${(frozen.address() as { port: number }).port}`;
    try {
      const several = new ApiClient({ url: `${frozenUrl},${api.url}`, token: "t" });
      const started = Date.now();
      const reply = await several.get<{ method: string }>("/apps");
      assert.equal(reply.method, "GET");
      const took = Date.now() - started;
      assert.ok(took >= 900 && took < 5000, `answered after ${took} ms (hedged after 1 s)`);
      assert.equal(several.url, api.url);
      const other = new ApiClient({ url: `${frozenUrl},${api.url}`, token: "t" });
      const posted = other.post("/apps", { name: "y" }, undefined);
      const outcome = await Promise.race([
        posted.then(() => "answered"),
        new Promise((r) => setTimeout(r, 1500, "held")),
      ]);
      assert.equal(outcome, "held", "a POST is sent to the server in use only");
      posted.catch(() => {});
    } finally {
      for (const socket of held) socket.destroy();
      frozen.close();
    }
  });

  it("reads an NDJSON stream split across chunks", async () => {
    const seen: unknown[] = [];
    for await (const item of client.stream("/stream")) seen.push(item);
    assert.deepEqual(seen, [{ n: 1 }, { n: 2 }, { n: 3 }]);
  });

  it("uploads a file with its length and reports progress", async () => {
    const dir = await mkdtemp(join(tmpdir(), "herd-cli-upload-"));
    try {
      const file = join(dir, "src.tar.gz");
      await writeFile(file, Buffer.alloc(600 * 1024, 1));
      const progress: number[] = [];
      const reply = await client.upload<{ received: number; type: string }>(
        "/upload",
        { path: file, size: 600 * 1024, contentType: "application/gzip" },
        (sent) => progress.push(sent),
      );
      assert.deepEqual(reply, { received: 600 * 1024, type: "application/gzip" });
      assert.equal(api.requests.at(-1)!.headers["content-length"], String(600 * 1024));
      assert.ok(progress.length >= 2);
      assert.equal(progress.at(-1), 600 * 1024);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("readNdjson", () => {
  it("handles multi-byte characters split between chunks", async () => {
    const bytes = new TextEncoder().encode('{"s":"héllo"}\n');
    async function* chunks() {
      yield bytes.slice(0, 8);
      yield bytes.slice(8);
    }
    const seen: unknown[] = [];
    for await (const item of readNdjson(chunks())) seen.push(item);
    assert.deepEqual(seen, [{ s: "héllo" }]);
  });
});

describe("withDetails", () => {
  it("lists the problems under the message, except one the message already states", () => {
    const details = [
      { field: "alerts.a.expr", message: "parse error at position 3: unexpected end of input", line: 9 },
      { field: "alerts.a.for", message: "must be a duration", line: 10 },
    ];
    assert.equal(
      withDetails("herd.yaml:9: alerts.a.expr: parse error at position 3: unexpected end of input", details),
      "herd.yaml:9: alerts.a.expr: parse error at position 3: unexpected end of input\n  alerts.a.for (line 10): must be a duration",
    );
    assert.equal(
      withDetails("herd.yaml:10: alerts.a.for: must be a duration", [details[1]]),
      "herd.yaml:10: alerts.a.for: must be a duration",
    );
  });
});
