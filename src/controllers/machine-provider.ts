/**
 * Calling a machine provider: a command (`exec:/path/to/cmd`) or a webhook
 * (`https://…`) that herd hands a JSON request (model/machines.ts) and that
 * answers whether it did what was asked.
 *
 *   command: spawn(cmd) with a clean env (PATH only), the JSON on stdin ─► exit 0: done (stdout: optional JSON answer)
 *            other exit / killed after timeoutMs ─► failed (the last lines of stderr say why)
 *   webhook: POST JSON through the URL guard, signed (x-herd-signature: sha256=HMAC(secret, "<timestamp>.<body>"))
 *            2xx: done (body: optional JSON answer) · anything else, or no answer within timeoutMs ─► failed
 */

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { isAbsolute } from "node:path";
import { HerdError } from "../common/errors.ts";
import { UrlGuard } from "../common/url-guard.ts";
import type { ProviderAnswer, ProviderRequest } from "../model/machines.ts";

/** Calls the provider; resolves with its answer, rejects with an Error whose message says why it failed. */
export interface MachineProvider {
  /** How events name it: the command's path or the webhook's origin. */
  readonly name: string;
  call(request: ProviderRequest): Promise<ProviderAnswer>;
}

/** Answers (and stderr) are read up to this size. */
const MAX_OUTPUT = 64 * 1024;
/** Default time a provider call may take. */
export const DEFAULT_CALL_TIMEOUT_MS = 60_000;

export interface ProviderOptions {
  /** A call that takes longer fails (the command is killed). Default 60 s. */
  timeoutMs?: number;
  /** Webhooks: the HMAC key of `x-herd-signature` (required). */
  secret?: string;
  /** Webhooks: the guard every URL herd fetches goes through (default: one that allows no internal address). */
  guard?: UrlGuard;
}

/**
 * The provider `spec` names (`exec:/abs/path` or an http(s) URL), or a
 * HerdError naming the flag when it is neither.
 */
export function machineProvider(spec: string, options: ProviderOptions = {}): MachineProvider {
  const timeoutMs = options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  if (spec.startsWith("exec:")) {
    const command = spec.slice(5);
    if (!isAbsolute(command))
      throw new HerdError("invalid", `--machine-provider exec:${command}: give the command's absolute path`);
    return { name: command, call: (r) => callCommand(command, r, timeoutMs) };
  }
  if (/^https?:\/\//.test(spec)) {
    const url = new URL(spec);
    if (!options.secret)
      throw new HerdError(
        "invalid",
        "--machine-provider URL needs --machine-provider-secret-file: herd signs each request with it, so the webhook knows the join tokens it gets come from herd",
      );
    const { secret } = options;
    const guard = options.guard ?? new UrlGuard();
    return { name: url.origin, call: (r) => callWebhook(guard, spec, secret, r, timeoutMs) };
  }
  throw new HerdError(
    "invalid",
    `--machine-provider ${spec}: expected exec:/path/to/command or an http(s):// webhook URL`,
  );
}

/** Runs `command` with the request on stdin; exit 0 is success. */
export function callCommand(
  command: string,
  request: ProviderRequest,
  timeoutMs: number,
): Promise<ProviderAnswer> {
  return new Promise((resolve, reject) => {
    // A clean env: nothing of herd's own (tokens, data dir) leaks into the provider.
    const child = spawn(command, [request.action], {
      cwd: "/",
      env: { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin" },
      stdio: ["pipe", "pipe", "pipe"],
      // Its own process group, so a timeout kills what it started in the foreground too.
      detached: true,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      if (stdout.length < MAX_OUTPUT) stdout += d.toString("utf8");
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString("utf8")).slice(-MAX_OUTPUT);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    }, timeoutMs);
    child.stdin.on("error", () => {}); // a provider that does not read its stdin
    child.stdin.end(JSON.stringify(request));
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`${command} could not be run: ${err.message}`));
    });
    // On exit, not on close: a provider that leaves a machine (an agent) running in the background
    // may leave it holding our pipes; what it printed before it exited is read, then the pipes are let go.
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        if (timedOut)
          reject(new Error(`${command} ${request.action}: no answer within ${timeoutMs} ms (killed)`));
        else if (code !== 0) {
          const why = lastLines(stderr) || lastLines(stdout) || "no output";
          reject(new Error(`${command} ${request.action} exited with ${code ?? signal}: ${why}`));
        } else resolve(parseAnswer(stdout));
      }, 50);
    });
  });
}

/** POSTs the request, signed, through the URL guard; a 2xx is success. */
export async function callWebhook(
  guard: UrlGuard,
  url: string,
  secret: string,
  request: ProviderRequest,
  timeoutMs: number,
): Promise<ProviderAnswer> {
  const body = JSON.stringify(request);
  const timestamp = String(Math.floor(Date.now() / 1000));
  let res: Awaited<ReturnType<UrlGuard["fetch"]>>;
  try {
    res = await guard.fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "user-agent": "herd-machines",
        "x-herd-timestamp": timestamp,
        "x-herd-signature": signature(secret, timestamp, body),
      },
      body,
      timeoutMs,
      maxBytes: MAX_OUTPUT,
    });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    if (e.name === "TimeoutError")
      throw new Error(`${new URL(url).origin}: no answer within ${timeoutMs} ms`);
    throw new Error(`${new URL(url).origin}: ${e.cause?.code ?? e.message}`);
  }
  const text = res.body.toString("utf8");
  if (res.status < 200 || res.status >= 300)
    throw new Error(`${new URL(url).origin} answered HTTP ${res.status}: ${lastLines(text) || "no body"}`);
  return parseAnswer(text);
}

/** `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`: what a webhook checks the request against. */
export function signature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

/** An answer's optional JSON; anything else (or nothing) is an empty answer. */
function parseAnswer(text: string): ProviderAnswer {
  try {
    const v = JSON.parse(text) as unknown;
    if (v && typeof v === "object" && typeof (v as { message?: unknown }).message === "string")
      return { message: (v as { message: string }).message.slice(0, 500) };
  } catch {}
  return {};
}

/** The last non-empty lines of some output, at most 500 characters: what an event can show. */
function lastLines(text: string): string {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.slice(-3).join(" / ").slice(-500);
}
