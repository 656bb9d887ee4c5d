import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type protobuf from "protobufjs";
import { UrlGuard } from "../common/url-guard.ts";
import { encodeRemoteWrite, RemoteWriter } from "./remote-write.ts";
import { Tsdb } from "./tsdb/tsdb.ts";

const require = createRequire(import.meta.url);
const { parse } = require("protobufjs") as typeof protobuf;
const { uncompress } = require("snappyjs") as { uncompress: (data: Uint8Array) => Uint8Array };

// prometheus/prompb/types.proto and remote.proto, the parts remote write 1.0 uses.
const WriteRequest = parse(`
syntax = "proto3";
message WriteRequest { repeated TimeSeries timeseries = 1; }
message TimeSeries { repeated Label labels = 1; repeated Sample samples = 2; }
message Label { string name = 1; string value = 2; }
message Sample { double value = 1; int64 timestamp = 2; }
`).root.lookupType("WriteRequest");

interface Decoded {
  timeseries: {
    labels: { name: string; value: string }[];
    samples: { value: number; timestamp: number }[];
  }[];
}

const decode = (body: Uint8Array) =>
  WriteRequest.toObject(WriteRequest.decode(uncompress(body)), { longs: Number, defaults: true }) as Decoded;

test("a WriteRequest as Prometheus reads it: snappy, labels sorted by name, samples in ms", () => {
  const body = encodeRemoteWrite([
    {
      labels: { zone: "b", __name__: "http_requests_total", app: "shop" },
      samples: [
        [1_733_360_000_000, 1.5],
        [1_733_360_015_000, Number.NaN],
      ],
    },
    { labels: { __name__: "up" }, samples: [[1_733_360_000_123, 1]] },
  ]);
  const req = decode(body);
  assert.equal(req.timeseries.length, 2);
  assert.deepEqual(
    req.timeseries[0]?.labels.map((l) => [l.name, l.value]),
    [
      ["__name__", "http_requests_total"],
      ["app", "shop"],
      ["zone", "b"],
    ],
  );
  assert.deepEqual(req.timeseries[0]?.samples[0], { value: 1.5, timestamp: 1_733_360_000_000 });
  assert.ok(Number.isNaN(req.timeseries[0]?.samples[1]?.value));
  assert.deepEqual(req.timeseries[1]?.samples, [{ value: 1, timestamp: 1_733_360_000_123 }]);
});

test("every sample the TSDB accepts goes to the receiver, in batches, and only those", async (t) => {
  const bodies: { headers: Record<string, string | string[] | undefined>; body: Decoded }[] = [];
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      bodies.push({ headers: req.headers, body: decode(Buffer.concat(chunks)) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  t.after(() => receiver.close());
  const dir = mkdtempSync(join(tmpdir(), "herd-remote-write-"));
  const tsdb = new Tsdb({ dir });
  t.after(() => {
    tsdb.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const writer = new RemoteWriter({
    url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/api/v1/write`,
    headers: { authorization: "Bearer x" },
    batchSize: 2,
    flushMs: 10,
    guard: new UrlGuard({ allow: ["127.0.0.0/8"] }),
  });
  tsdb.onAppend((series) => writer.add(series));
  const now = Date.now();
  tsdb.append([
    { labels: { __name__: "a", n: "1" }, samples: [[now, 1]] },
    { labels: { __name__: "a", n: "2" }, samples: [[now, 2]] },
    { labels: { __name__: "a", n: "3" }, samples: [[now, 3]] },
  ]);
  // Out of order for a's n=1: the TSDB drops it, so it is not sent.
  tsdb.append([
    {
      labels: { __name__: "a", n: "1" },
      samples: [
        [now - 5000, 9],
        [now + 1, 4],
      ],
    },
  ]);
  await writer.close();
  const sent = bodies.flatMap((b) => b.body.timeseries);
  assert.deepEqual(
    sent.map((s) => [s.labels.find((l) => l.name === "n")?.value, s.samples.map((x) => x.value)]),
    [
      ["1", [1]],
      ["2", [2]],
      ["3", [3]],
      ["1", [4]],
    ],
  );
  assert.ok(bodies.length >= 2, `${bodies.length} requests for 4 series in batches of 2`);
  const h = bodies[0]?.headers ?? {};
  assert.equal(h["content-encoding"], "snappy");
  assert.equal(h["content-type"], "application/x-protobuf");
  assert.equal(h["x-prometheus-remote-write-version"], "0.1.0");
  assert.equal(h.authorization, "Bearer x");
  assert.deepEqual(writer.stats(), { sent: 4, dropped: 0, pending: 0, retries: 0, lastError: null });
});
