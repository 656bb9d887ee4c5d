/**
 * Health probes: HTTP GET of the health path on 127.0.0.1:<port> (2xx and 3xx
 * pass), or a TCP connect when the service has no path. One probe, one answer;
 * the agent counts failures in a row.
 */

import { request } from "node:http";
import { connect } from "node:net";

/** What to probe. */
export interface ProbeTarget {
  port: number;
  /** HTTP path; absent = TCP connect. */
  path?: string;
  timeoutMs: number;
  /** Default 127.0.0.1: instances listen on this machine. */
  host?: string;
}

/** The outcome of one probe; message says why it failed. */
export interface ProbeResult {
  ok: boolean;
  message?: string;
}

/** Runs one health probe; never rejects. */
export function probe(target: ProbeTarget): Promise<ProbeResult> {
  return target.path === undefined ? probeTcp(target) : probeHttp(target, target.path);
}

function probeHttp(target: ProbeTarget, path: string): Promise<ProbeResult> {
  const host = target.host ?? "127.0.0.1";
  return new Promise((resolve) => {
    // agent: false — a fresh connection per probe, so a wedged keep-alive socket cannot pass for a live app.
    const req = request(
      { host, port: target.port, path, method: "GET", agent: false, timeout: target.timeoutMs },
      (res) => {
        const status = res.statusCode ?? 0;
        res.resume();
        resolve(
          status >= 200 && status < 400
            ? { ok: true }
            : { ok: false, message: `GET ${path} answered ${status}` },
        );
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${target.timeoutMs} ms`)));
    req.on("error", (err) =>
      resolve({ ok: false, message: `GET ${path} on port ${target.port}: ${err.message}` }),
    );
    req.end();
  });
}

function probeTcp(target: ProbeTarget): Promise<ProbeResult> {
  const host = target.host ?? "127.0.0.1";
  return new Promise((resolve) => {
    const socket = connect({ host, port: target.port, timeout: target.timeoutMs });
    socket.once("connect", () => {
      socket.destroy();
      resolve({ ok: true });
    });
    socket.once("timeout", () => socket.destroy(new Error(`no connection within ${target.timeoutMs} ms`)));
    socket.once("error", (err) =>
      resolve({ ok: false, message: `connect to port ${target.port}: ${err.message}` }),
    );
  });
}
