/**
 * Apps that probe what an instance can reach. The prober is the hostile app
 * of the isolation tests (isolation.test.ts, ha.test.ts):
 * GET /probe?spec=<json> tries each thing the spec names and answers what
 * happened, as JSON: `read` files (the error code, or "allowed"), `signal` a
 * pid, `connect` to a port on 127.0.0.1 or to "host:port" ("allowed", the
 * error code, or "timeout" after 3 s); and the mount its app is on.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const PROBER = `
const fs = require("node:fs");
const http = require("node:http");
const net = require("node:net");
const outcome = (fn) => { try { fn(); return "allowed"; } catch (err) { return err.code || String(err); } };
const connect = (to) => new Promise((resolve) => {
  const at = String(to).includes(":") ? /^\\[?(.+?)\\]?:(\\d+)$/.exec(String(to)) : [, "127.0.0.1", to];
  const s = net.connect(Number(at[2]), at[1]);
  const done = (r) => { s.destroy(); resolve(r); };
  s.on("connect", () => done("allowed"));
  s.on("error", (err) => done(err.code));
  setTimeout(() => done("timeout"), 3000);
});
http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname !== "/probe") return res.end("ok");
  const spec = JSON.parse(url.searchParams.get("spec"));
  const r = { instance: process.env.HERD_INSTANCE, uid: process.getuid(), read: {}, connect: {} };
  for (const [name, file] of Object.entries(spec.read ?? {})) r.read[name] = outcome(() => fs.readFileSync(file));
  // Never pid 0 or less: that would be its own process group.
  r.signal = spec.signal > 0 ? outcome(() => process.kill(spec.signal, "SIGKILL")) : "not tried";
  // The mount its working directory is on: the deepest mount point above it, and that mount's options.
  const cwd = process.cwd();
  for (const line of fs.readFileSync("/proc/self/mountinfo", "utf8").split("\\n")) {
    const [, , , , point, options] = line.split(" ");
    if (point && (cwd === point || cwd.startsWith(point === "/" ? "/" : point + "/")) && (!r.cwdMount || point.length >= r.cwdMount.point.length))
      r.cwdMount = { point, options };
  }
  for (const [name, to] of Object.entries(spec.connect ?? {})) r.connect[name] = await connect(to);
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify(r));
}).listen(Number(process.env.PORT), "127.0.0.1");
`;

/** What a probe asks: files to read, a pid to signal, ports or "host:port" to connect to. */
export interface ProbeSpec {
  read?: Record<string, string>;
  signal?: number | undefined;
  connect?: Record<string, number | string | undefined>;
}

/** What the prober answers. */
export interface ProbeResult {
  instance: string;
  uid: number;
  read: Record<string, string>;
  signal: string;
  connect: Record<string, string>;
  /** The mount its working directory (its app) is on, and that mount's options (mountinfo's). */
  cwdMount: { point: string; options: string };
}

/** Writes the prober app into `dir`: `instances` instances of service web, routed at `host`. */
export function writeProber(dir: string, options: { app: string; host: string; instances: number }): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "server.js"), PROBER);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: options.app, private: true }));
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      `app: ${options.app}`,
      "services:",
      "  web:",
      "    command: node server.js",
      `    instances: ${options.instances}`,
      "    resources: { cpu: 0.25, memory: 128Mi }",
      `    routes: [{ host: ${options.host}, path: / }]`,
      "",
    ].join("\n"),
  );
}

/** The probe's path on the prober's route. */
export function probePath(spec: ProbeSpec): string {
  return `/probe?spec=${encodeURIComponent(JSON.stringify(spec))}`;
}

/**
 * A smaller prober for instances across nodes (nodes.test.ts,
 * containers-nodes.test.ts): answers /healthz, and /connect?host=H&port=P with
 * what a TCP connection there did. It listens on every address, as a
 * container's published port needs.
 */
export const CONNECTOR = `const http = require("node:http");
const net = require("node:net");
http.createServer((req, res) => {
  const u = new URL(req.url, "http://x");
  if (u.pathname !== "/connect") return res.end("ok");
  const s = net.connect(Number(u.searchParams.get("port")), u.searchParams.get("host"));
  const done = (what) => { s.destroy(); res.end(what); };
  s.setTimeout(3000, () => done("timeout"));
  s.on("connect", () => done("allowed"));
  s.on("error", (err) => done(err.code || String(err)));
}).listen(Number(process.env.PORT));
`;
