import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatDeployEntry } from "../common/deploy-log-format.ts";
import type { Event, Instance, Node, Release } from "../model/objects.ts";
import {
  eventObject,
  eventsTable,
  formatAge,
  formatBytes,
  formatExpiry,
  formatLogLine,
  formatTime,
  instancesTable,
  isolationText,
  nodesTable,
  releasesTable,
  renderTable,
} from "./format.ts";
import { inTimeOrder, LogCursor, sinceTime } from "./logs.ts";
import { logsOptionsFromFlags } from "./store-flags.ts";

const NOW = Date.parse("2026-01-01T12:00:00Z");
const ago = (seconds: number) => new Date(NOW - seconds * 1000).toISOString();

describe("renderTable", () => {
  it("aligns columns, capitalises headers and trims line ends", () => {
    const text = renderTable(
      ["name", "state", "msg"],
      [
        ["a", "running", ""],
        ["longer", "x", "hi"],
      ],
    );
    assert.equal(text, "NAME     STATE     MSG\na        running\nlonger   x         hi");
  });
});

describe("formatAge and formatBytes", () => {
  it("says how long ago", () => {
    assert.equal(formatAge(ago(3), NOW), "3s ago");
    assert.equal(formatAge(ago(300), NOW), "5m ago");
    assert.equal(formatAge(ago(7200), NOW), "2h ago");
    assert.equal(formatAge(ago(3 * 86400), NOW), "3d ago");
    assert.equal(formatAge(new Date(NOW + 5000).toISOString(), NOW), "0s ago");
    assert.equal(formatAge(undefined, NOW), "-");
  });
  it("sizes in binary units", () => {
    assert.equal(formatBytes(512), "512 B");
    assert.equal(formatBytes(1536), "1.5 KiB");
    assert.equal(formatBytes(128 * 1024 * 1024), "128 MiB");
  });
});

function instance(over: Partial<Instance>): Instance {
  return {
    id: "i1",
    tenant: "default",
    app: "hello",
    service: "web",
    release: 2,
    mode: "cattle",
    node: "local",
    desired: "running",
    generation: 1,
    state: "running",
    reason: "",
    message: "",
    run: { resources: { cpu: 0.1, memory: 256 * 1024 ** 2 } } as Instance["run"],
    port: 40001,
    restarts: 0,
    createdAt: ago(60),
    startedAt: ago(30),
    ...over,
  };
}

describe("instancesTable", () => {
  it("leaves out MESSAGE when no instance has one", () => {
    const text = instancesTable([instance({})], NOW);
    assert.equal(
      text.split("\n")[0],
      "ID   SERVICE   RELEASE   STATE     NODE    PORT    CPU   QOS         RESTARTS   AGE",
    );
    assert.equal(
      text.split("\n")[1],
      "i1   web       v2        running   local   40001   0.1   burstable   0          30s ago",
    );
  });
  it("shows a CPU ceiling and the QoS class it makes", () => {
    const capped = (cpuLimit: number) =>
      instance({ run: { resources: { cpu: 0.25, memory: 1, cpuLimit } } as Instance["run"] });
    const lines = instancesTable([capped(0.25), capped(1)], NOW).split("\n");
    assert.match(lines[1], / 0\.25\/0\.25 +guaranteed /);
    assert.match(lines[2], / 0\.25\/1 +burstable /);
  });
  it("shows why an instance is pending", () => {
    const text = instancesTable(
      [
        instance({}),
        instance({
          id: "i2",
          state: "pending",
          node: null,
          port: undefined,
          reason: "Unschedulable",
          message: "no node has 4 GiB free",
        }),
      ],
      NOW,
    );
    assert.match(text.split("\n")[0], /AGE +MESSAGE$/);
    assert.match(text, /i2 .*pending .* - .*Unschedulable: no node has 4 GiB free$/m);
  });
});

describe("releasesTable", () => {
  it("marks the current release", () => {
    const release = (version: number, description: string) =>
      ({ version, description, createdAt: ago(120) }) as Release;
    const lines = releasesTable([release(2, "Deploy abc"), release(1, "Deploy def")], 2, NOW).split("\n");
    assert.equal(lines[0], "VERSION   CREATED   DESCRIPTION   CURRENT");
    assert.equal(lines[1], "v2        2m ago    Deploy abc    *");
    assert.equal(lines[2], "v1        2m ago    Deploy def");
  });
});

describe("eventsTable", () => {
  it("names the object and indents details", () => {
    const e: Event = {
      id: "e1",
      time: ago(5),
      app: "hello",
      service: "web",
      instance: "i1",
      reason: "InstanceCrashed",
      message: "exited with code 1",
      type: "warning",
      details: ["Error: boom"],
    };
    assert.equal(eventObject(e), "instance/hello.web.i1");
    assert.equal(
      eventObject({ ...e, instance: undefined, service: undefined, app: undefined, node: "n1" }),
      "node/n1",
    );
    const lines = eventsTable([e], NOW).split("\n");
    assert.equal(lines[0], "TIME     TYPE      REASON            OBJECT                  MESSAGE");
    assert.equal(lines[1], "5s ago   warning   InstanceCrashed   instance/hello.web.i1   exited with code 1");
    assert.equal(lines[2], "      | Error: boom");
  });
});

describe("nodesTable", () => {
  it("shows capacity, isolation, drivers and heartbeat age", () => {
    const node = {
      name: "local",
      address: "127.0.0.1",
      labels: {},
      capacity: { cpu: 4, memory: 8 * 1024 ** 3 },
      allocatable: { cpu: 4, memory: 8 * 1024 ** 3 },
      state: "ready",
      lastHeartbeat: ago(1),
      registeredAt: ago(100),
      agentVersion: "0.1.0",
      isolation: { cgroups: "none", reason: "not root" },
      schedulable: true,
    } as Node;
    const lines = nodesTable([node], NOW).split("\n");
    assert.equal(
      lines[0],
      "NAME    STATE   ADDRESS     CPU   MEMORY   ISOLATION                 DRIVERS   LAST HEARTBEAT",
    );
    assert.equal(
      lines[1],
      "local   ready   127.0.0.1   4     8 GiB    cgroups none (not root)   process   1s ago",
    );
    const docker = nodesTable([{ ...node, drivers: ["docker"] }], NOW).split("\n");
    assert.match(docker[1], /cgroups none \(not root\) {3}process,docker {3}1s ago$/);
    // Each other driver's isolation after the process driver's.
    const both = nodesTable(
      [
        {
          ...node,
          drivers: ["docker"],
          driverIsolation: { docker: { cgroups: "v1", sandbox: "uid", network: "nftables" } },
        },
      ],
      NOW,
    ).split("\n");
    assert.match(
      both[1],
      /cgroups none \(not root\) · docker: cgroups v1, sandbox uid, network nftables {3}process,docker/,
    );
  });

  it("names each isolation layer and why one is missing", () => {
    assert.equal(
      isolationText({ cgroups: "v1", sandbox: "uid", network: "nftables" }),
      "cgroups v1, sandbox uid, network nftables",
    );
    assert.equal(
      isolationText({ cgroups: "v2", sandbox: "uid", network: "none", missing: ["network: nft not found"] }),
      "cgroups v2, sandbox uid, network none; missing: network: nft not found",
    );
  });
});

describe("log and deploy lines", () => {
  it("formats a log line", () => {
    const entry = {
      seq: 1,
      instance: "i1",
      time: "2026-01-01T12:00:00.000Z",
      stream: "stdout" as const,
      line: "hi",
      app: "hello",
      service: "web",
    };
    assert.equal(formatLogLine(entry), "2026-01-01T12:00:00.000Z web.i1 | hi");
    assert.equal(formatLogLine(entry, true), "2026-01-01T12:00:00.000Z hello/web.i1 | hi");
    assert.equal(
      formatLogLine({ ...entry, stream: "stderr", line: "ERROR boom", level: "error" }),
      "2026-01-01T12:00:00.000Z web.i1 err | ERROR boom",
    );
    const fields = { level: "warn", msg: "cart slow", ms: 812, path: "/a b", trace_id: "4bf9" };
    assert.equal(
      formatLogLine({
        ...entry,
        line: JSON.stringify(fields),
        fields,
        level: "warn",
        msg: "cart slow",
        traceId: "4bf9",
      }),
      '2026-01-01T12:00:00.000Z web.i1 | WARN cart slow ms=812 path="/a b"  trace=4bf9',
    );
    // One line per entry, and the trace id once, whichever field it came from.
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const nested = { lvl: "crit", msg: "multi\nline", trace: { id: traceId }, user: "ann" };
    assert.equal(
      formatLogLine({
        ...entry,
        line: JSON.stringify(nested),
        fields: nested,
        level: "fatal",
        msg: "multi\nline",
        traceId,
      }),
      `2026-01-01T12:00:00.000Z web.i1 | FATAL multi\\nline user=ann  trace=${traceId}`,
    );
    const parent = { msg: "hi", traceparent: `00-${traceId}-00f067aa0ba902b7-01` };
    assert.equal(
      formatLogLine({ ...entry, line: JSON.stringify(parent), fields: parent, msg: "hi", traceId }),
      `2026-01-01T12:00:00.000Z web.i1 | hi  trace=${traceId}`,
    );
  });
  it("formats events in the log stream", () => {
    const event = {
      seq: 2,
      instance: "i1",
      time: "2026-01-01T12:00:00.000Z",
      stream: "event" as const,
      line: "i1 exited with code 1",
      app: "hello",
      service: "web",
      level: "warn",
      reason: "InstanceCrashed",
    };
    assert.equal(
      formatLogLine(event),
      "2026-01-01T12:00:00.000Z event web | WARN InstanceCrashed: i1 exited with code 1",
    );
    assert.equal(
      formatLogLine(event, true),
      "2026-01-01T12:00:00.000Z event hello/web | WARN InstanceCrashed: i1 exited with code 1",
    );
    // An event of the app itself (a deploy's): its name alone in the tenant-wide stream, nothing in the app's.
    const appEvent = { ...event, service: "", reason: "DeployFailed", line: "bad herd.yaml" };
    assert.equal(
      formatLogLine(appEvent, true),
      "2026-01-01T12:00:00.000Z event hello | WARN DeployFailed: bad herd.yaml",
    );
    assert.equal(
      formatLogLine(appEvent),
      "2026-01-01T12:00:00.000Z event | WARN DeployFailed: bad herd.yaml",
    );
    assert.equal(
      formatLogLine({
        ...event,
        app: "",
        service: "",
        instance: "",
        node: "n1",
        reason: "NodeLost",
        line: "lost",
      }),
      "2026-01-01T12:00:00.000Z event node n1 | WARN NodeLost: lost",
    );
  });
  it("prints a page of logs in the order things happened, ties in the stored order", () => {
    const at = (seq: number, time: string, line: string) => ({
      seq,
      time: `2026-01-01T12:00:0${time}Z`,
      tenant: "t",
      app: "hello",
      service: "web",
      instance: "i1",
      stream: "stdout" as const,
      line,
    });
    // An instance's start, recorded from a heartbeat after the deploy's success it led to.
    const page = [
      at(1, "2.2", "succeeded"),
      at(2, "1.9", "started"),
      at(3, "2.2", "next"),
      at(4, "2.5", "last"),
    ];
    assert.deepEqual(
      inTimeOrder(page).map((e) => e.line),
      ["started", "succeeded", "next", "last"],
    );
  });
  it("reads --since as a duration ago or a time", () => {
    const now = Date.parse("2026-01-01T12:00:00Z");
    assert.equal(sinceTime("10m", now), "2026-01-01T11:50:00.000Z");
    assert.equal(sinceTime("2026-01-01T10:00:00Z", now), "2026-01-01T10:00:00.000Z");
    assert.throws(() => sinceTime("yesterday", now), /--since must be/);
    assert.throws(() => sinceTime("10", now), /--since must be/);
  });
  it("reads the log retention flags", () => {
    assert.deepEqual(logsOptionsFromFlags({}), { maxAgeMs: 7 * 86_400_000, maxBytes: 256 * 1024 * 1024 });
    assert.deepEqual(logsOptionsFromFlags({ "logs-retention": "2h", "logs-max-size": "1Gi" }), {
      maxAgeMs: 7_200_000,
      maxBytes: 1024 ** 3,
    });
    assert.throws(() => logsOptionsFromFlags({ "logs-retention": "5" }), /--logs-retention must be/);
    assert.throws(() => logsOptionsFromFlags({ "logs-max-size": "lots" }), /--logs-max-size must be/);
    assert.throws(() => logsOptionsFromFlags({ "logs-max-size": "10Ki" }), /at least 1Mi/);
  });
  it("formats deploy entries Heroku style", () => {
    assert.equal(formatDeployEntry({ type: "step", message: "Building" }), "-----> Building");
    assert.equal(
      formatDeployEntry({ type: "build", message: "npm ci\nadded 1" }),
      "       npm ci\n       added 1",
    );
    // What the builder indented itself is indented once, not twice.
    assert.equal(
      formatDeployEntry({ type: "build", message: "-----> Installing\n       added 1 package\n" }),
      "-----> Installing\n       added 1 package\n       ",
    );
  });
  it("LogCursor skips lines it has shown and pings", () => {
    const cursor = new LogCursor();
    const at = (seq: number, line: string) => ({
      seq,
      instance: "i1",
      time: "t",
      stream: "stdout" as const,
      line,
      app: "a",
      service: "web",
    });
    assert.equal(cursor.accept(at(1, "a")), true);
    assert.equal(cursor.accept(at(2, "b")), true);
    assert.equal(cursor.after, 2);
    assert.equal(cursor.accept({ type: "ping" } as never), false);
    // A reopened stream that repeats:
    assert.equal(cursor.accept(at(2, "b")), false);
    assert.equal(cursor.accept(at(3, "c")), true);
  });
});

it("expiries: ahead rounded to the nearest unit, past as an age, none as never", () => {
  const now = Date.parse("2026-01-01T12:00:00Z");
  const at = (ms: number) => new Date(now + ms).toISOString();
  assert.equal(formatExpiry(at(30 * 86400_000 - 500), now), "in 30d");
  assert.equal(formatExpiry(at(90 * 60_000), now), "in 2h");
  assert.equal(formatExpiry(at(45_000), now), "in 45s");
  assert.equal(formatExpiry(at(-3 * 3600_000), now), "expired 3h ago");
  assert.equal(formatExpiry(undefined, now), "never");
  assert.equal(formatTime("2026-01-01T12:00:05.123Z"), "2026-01-01 12:00:05");
});
