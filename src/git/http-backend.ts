/**
 * Git's smart HTTP protocol through Debian git's own server: `git
 * http-backend` run as a CGI, one process per request.
 *
 *   request ─► env (PATH_INFO, QUERY_STRING, CONTENT_TYPE, …) + body on stdin ─► git http-backend
 *   reply   ◄─ "Status: …" and headers up to the blank line, then the body   ◄─ its stdout
 *
 * http-backend runs upload-pack (fetch, clone) and receive-pack (push); a
 * push's hooks run under receive-pack, and what they print reaches the
 * pusher as `remote:` lines (git's side band).
 */

import { spawn } from "node:child_process";
import { PassThrough, type Readable } from "node:stream";

/** One request as the CGI sees it. */
export interface CgiRequest {
  method: string;
  /** The path below the project root: `/<tenant>/<app>.git/info/refs`. */
  pathInfo: string;
  query: string;
  /** The request's headers that http-backend reads. */
  contentType?: string;
  contentLength?: string;
  contentEncoding?: string;
  /** `Git-Protocol` (version=2). */
  gitProtocol?: string;
  remoteUser: string;
  remoteAddr: string;
  body?: Readable;
}

/** http-backend's answer: status, headers and the body as it streams. */
export interface CgiReply {
  status: number;
  headers: Record<string, string>;
  body: Readable;
}

/** Longest CGI header block accepted. */
const MAX_HEADER_BYTES = 64 * 1024;

/**
 * Runs `git http-backend` for one request. `env` is added to the CGI's
 * environment (the hooks see it). Resolves once the headers are read.
 */
export function runHttpBackend(
  git: string,
  projectRoot: string,
  req: CgiRequest,
  env: Record<string, string>,
): Promise<CgiReply> {
  const child = spawn(git, ["http-backend"], {
    stdio: ["pipe", "pipe", "pipe"],
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      // The server's own git config (root's ~/.gitconfig, /etc/gitconfig) stays out of tenants' repos.
      HOME: projectRoot,
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_PROJECT_ROOT: projectRoot,
      GIT_HTTP_EXPORT_ALL: "1",
      GATEWAY_INTERFACE: "CGI/1.1",
      REQUEST_METHOD: req.method,
      PATH_INFO: req.pathInfo,
      QUERY_STRING: req.query,
      REMOTE_USER: req.remoteUser,
      REMOTE_ADDR: req.remoteAddr,
      ...(req.contentType ? { CONTENT_TYPE: req.contentType } : {}),
      ...(req.contentLength ? { CONTENT_LENGTH: req.contentLength } : {}),
      ...(req.contentEncoding ? { HTTP_CONTENT_ENCODING: req.contentEncoding } : {}),
      ...(req.gitProtocol ? { GIT_PROTOCOL: req.gitProtocol } : {}),
      ...env,
    },
  });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  if (req.body) {
    req.body.pipe(child.stdin);
    // The client went away mid-upload: the backend gets EOF and gives up.
    req.body.on("error", () => child.stdin.destroy());
  } else child.stdin.end();
  child.stdin.on("error", () => {}); // the backend may exit before reading it all (a refused push)

  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    let done = false;
    const body = new PassThrough();
    const fail = (err: Error) => {
      if (done) return;
      done = true;
      child.kill("SIGKILL");
      reject(err);
    };
    child.on("error", fail);
    child.on("close", (code) => {
      if (!done) fail(new Error(`git http-backend exited with ${code} before its headers: ${stderr.trim()}`));
      else body.end();
    });
    child.stdout.on("data", (chunk: Buffer) => {
      if (done) {
        if (!body.write(chunk)) {
          child.stdout.pause();
          body.once("drain", () => child.stdout.resume());
        }
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = headerEnd(head);
      if (end === undefined) {
        if (head.length > MAX_HEADER_BYTES) fail(new Error("git http-backend sent no end of headers"));
        return;
      }
      done = true;
      const { status, headers } = parseCgiHeaders(head.subarray(0, end.at).toString("latin1"));
      const rest = head.subarray(end.at + end.length);
      if (rest.length > 0) body.write(rest);
      resolve({ status, headers, body });
    });
    // The reader went away (the client hung up): stop the backend and what it runs.
    body.on("close", () => {
      if (child.exitCode === null) child.kill("SIGTERM");
    });
  });
}

/** Where the header block ends: `\r\n\r\n` or `\n\n`. */
function headerEnd(buf: Buffer): { at: number; length: number } | undefined {
  const crlf = buf.indexOf("\r\n\r\n");
  const lf = buf.indexOf("\n\n");
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return { at: crlf, length: 4 };
  if (lf >= 0) return { at: lf, length: 2 };
  return undefined;
}

/** A CGI header block: `Status: 404 Not Found` sets the status (default 200), the rest are headers. */
export function parseCgiHeaders(text: string): { status: number; headers: Record<string, string> } {
  let status = 200;
  const headers: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "status") status = Number.parseInt(value, 10) || 500;
    else headers[name] = value;
  }
  return { status, headers };
}
