/**
 * Health probes: HTTP GET of the health path on 127.0.0.1:<port> (2xx and 3xx
 * pass), or a TCP connect when the service has no path. One probe, one answer;
 * the agent counts failures in a row and reports each different outcome
 * (probe-attempts.ts). An HTTP probe carries a `traceparent` that is not
 * sampled (flags 00), so an instrumented app makes no trace of it.
 */

import { nodeHttp } from "../common/node-http.ts";

const { request } = nodeHttp;

import { connect } from "node:net";
import { formatTraceparent, newSpanId, newTraceId } from "../observe/traces/trace-context.ts";

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
  /** The HTTP status, when the app answered. */
  status?: number;
  /** The start of a failing answer's body (at most BODY_START characters, one line). */
  body?: string;
}

/** How much of a failing answer's body a probe keeps. */
export const BODY_START = 200;
// Read a little more than is kept, so a multi-byte character cut at the end does not matter.
const BODY_READ_BYTES = BODY_START * 4;

/** Runs one health probe; never rejects. */
export function probe(target: ProbeTarget): Promise<ProbeResult> {
  return target.path === undefined ? probeTcp(target) : probeHttp(target, target.path);
}

function probeHttp(target: ProbeTarget, path: string): Promise<ProbeResult> {
  const host = target.host ?? "127.0.0.1";
  return new Promise((resolve) => {
    // agent: false — a fresh connection per probe, so a wedged keep-alive socket cannot pass for a live app.
    const req = request(
      {
        host,
        port: target.port,
        path,
        method: "GET",
        agent: false,
        timeout: target.timeoutMs,
        headers: { traceparent: formatTraceparent(newTraceId(), newSpanId(), false) },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 400) {
          res.resume();
          resolve({ ok: true, status });
          return;
        }
        // The start of the body usually says why ("database not ready"): keep it, then hang up.
        const chunks: Buffer[] = [];
        let size = 0;
        let finished = false;
        const done = () => {
          if (finished) return;
          finished = true;
          res.removeAllListeners("data");
          req.destroy();
          const body = oneLine(Buffer.concat(chunks).toString("utf8")).slice(0, BODY_START);
          resolve({
            ok: false,
            status,
            message: `GET ${path} answered ${status}`,
            ...(body ? { body } : {}),
          });
        };
        res.on("data", (chunk: Buffer) => {
          chunks.push(chunk);
          size += chunk.length;
          if (size >= BODY_READ_BYTES) done();
        });
        res.once("end", done);
        res.once("error", done);
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

/** Whitespace runs (newlines included) as one space, trimmed. */
function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}
