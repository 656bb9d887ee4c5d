import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { test } from "node:test";
import type { DriverUsage } from "./driver.ts";
import { parseMeminfo, parseNetDev, parseProcStat, readNodeStats, StatsReader } from "./node-stats.ts";
import { traceDefaults } from "./trace-defaults.ts";

test("/proc/stat, /proc/meminfo and /proc/net/dev are read into seconds and bytes", () => {
  assert.deepEqual(parseProcStat("cpu  100 5 50 1000 20 1 2 0 0 0\ncpu0 50 2 25 500 10 0 1 0 0 0\n"), {
    user: 1,
    nice: 0.05,
    system: 0.5,
    idle: 10,
    iowait: 0.2,
    irq: 0.01,
    softirq: 0.02,
    steal: 0,
  });
  assert.equal(parseProcStat("intr 1 2 3\n"), undefined);
  assert.deepEqual(parseMeminfo("MemTotal:       2000 kB\nMemFree:  10 kB\nMemAvailable:   1500 kB\n"), {
    totalBytes: 2000 * 1024,
    availableBytes: 1500 * 1024,
  });
  const netdev = [
    "Inter-|   Receive                                                |  Transmit",
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed",
    "    lo: 9999 10 0 0 0 0 0 0 9999 10 0 0 0 0 0 0",
    "  eth0: 1000 10 0 0 0 0 0 0 200 2 0 0 0 0 0 0",
    "  eth1: 500 5 0 0 0 0 0 0 50 1 0 0 0 0 0 0",
  ].join("\n");
  assert.deepEqual(parseNetDev(netdev), { receiveBytes: 1500, transmitBytes: 250 });
});

test("readNodeStats reads this machine", async () => {
  const stats = await readNodeStats(tmpdir());
  assert.ok((stats.cpuSeconds?.user ?? 0) > 0);
  assert.ok((stats.memory?.availableBytes ?? 0) > 0);
  assert.ok((stats.disk?.freeBytes ?? -1) >= 0 && (stats.disk?.totalBytes ?? 0) > 0);
});

const desired = (env: Record<string, string>) => ({
  id: "web-1",
  app: "shop",
  service: "web",
  tenant: "acme",
  run: { slug: "", command: "", env, resources: { cpu: 1, memory: 1 }, health: {} as never },
});

test("StatsReader: cores between an instance's readings; a driver's repeated reading keeps its cores; maxAge bounds re-reading", async () => {
  const readings = new Map<string, DriverUsage>();
  const stats = new StatsReader(tmpdir(), 20, async (id) => readings.get(id));
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  readings.set("a", { cpuSeconds: 10, memoryBytes: 1 });
  const first = await stats.read(["a"]);
  assert.equal(first.usage.get("a")?.cpuCores, undefined, "one reading tells no cores");
  assert.equal(await stats.read(["a"]), first, "within maxAge the last reading repeats");
  await pause(100);
  readings.set("a", { cpuSeconds: 10.05, memoryBytes: 1 });
  const second = (await stats.read(["a"])).usage.get("a");
  // 0.05 CPU seconds over about 100 ms: about half a core (timers run late, never early).
  assert.ok(
    second?.cpuCores !== undefined && second.cpuCores > 0.2 && second.cpuCores <= 0.5,
    `${second?.cpuCores}`,
  );
  assert.equal("readAt" in (second ?? {}), false, "readAt stays in the agent");
  // A driver that repeats what it read (docker's cache) keeps the cores worked out for it, not 0.
  readings.set("b", { cpuSeconds: 4, readAt: 1_000 });
  await pause(30);
  await stats.read(["a", "b"]);
  readings.set("b", { cpuSeconds: 5, readAt: 3_000 });
  await pause(30);
  assert.equal((await stats.read(["a", "b"])).usage.get("b")?.cpuCores, 0.5);
  await pause(30);
  assert.equal(
    (await stats.read(["a", "b"])).usage.get("b")?.cpuCores,
    0.5,
    "the same reading, the same cores",
  );
  // An instance gone and back (a restart with the same id) starts over.
  await pause(30);
  await stats.read(["a"]);
  await pause(30);
  assert.equal((await stats.read(["a", "b"])).usage.get("b")?.cpuCores, undefined);
});

test("trace defaults: a name the gateway's spans share, herd's attributes, the ingest with its token", () => {
  assert.deepEqual(traceDefaults(desired({}), "http://cp:7070/", "tok"), {
    OTEL_SERVICE_NAME: "shop/web",
    OTEL_RESOURCE_ATTRIBUTES: "herd.tenant=acme,herd.app=shop,herd.service=web,herd.instance=web-1",
    OTEL_EXPORTER_OTLP_ENDPOINT: "http://cp:7070/api/v1/otlp",
    OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20tok",
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
  });
  // A service that picks gRPC gets the relay's gRPC port (no path), with the token.
  const grpc = traceDefaults(
    desired({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }),
    "http://cp",
    "tok",
    "http://r:9",
  );
  assert.equal(grpc.OTEL_EXPORTER_OTLP_ENDPOINT, "http://r:9");
  assert.equal(grpc.OTEL_EXPORTER_OTLP_HEADERS, "authorization=Bearer%20tok");
  assert.equal(grpc.OTEL_EXPORTER_OTLP_PROTOCOL, undefined, "its own setting stays");
  // One signal sent elsewhere: herd sets no endpoint (the others would follow the general one).
  assert.equal(
    traceDefaults(desired({ OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "http://m" }), "http://cp", "tok")
      .OTEL_EXPORTER_OTLP_ENDPOINT,
    undefined,
  );
  // A service with its own collector gets neither herd's endpoint nor its token.
  const own = traceDefaults(
    desired({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" }),
    "http://cp",
    "tok",
  );
  assert.equal(own.OTEL_EXPORTER_OTLP_ENDPOINT, undefined);
  assert.equal(own.OTEL_EXPORTER_OTLP_HEADERS, undefined);
  assert.equal(own.OTEL_SERVICE_NAME, "shop/web");
  // Its own attribute keys win; herd's others are added.
  assert.equal(
    traceDefaults(desired({ OTEL_RESOURCE_ATTRIBUTES: "herd.app=x,team=a" }), "http://cp", undefined)
      .OTEL_RESOURCE_ATTRIBUTES,
    "herd.app=x,team=a,herd.tenant=acme,herd.service=web,herd.instance=web-1",
  );
  // Without a token (an older control plane) no endpoint is set.
  assert.equal(traceDefaults(desired({}), "http://cp", undefined).OTEL_EXPORTER_OTLP_ENDPOINT, undefined);
});
