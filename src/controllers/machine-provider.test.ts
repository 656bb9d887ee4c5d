import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { UrlGuard } from "../common/url-guard.ts";
import type { ProviderRequest } from "../model/machines.ts";
import { machineProvider, signature } from "./machine-provider.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-machine-provider-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const request: ProviderRequest = {
  version: 1,
  action: "request",
  id: "m-1",
  server: "http://127.0.0.1:7070",
  joinToken: "herd_jnt_x",
  joinBy: "2026-01-01T00:10:00.000Z",
  machines: 1,
  needs: [],
};

/** Whether a process runs (a zombie waiting for its reaper does not). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** A provider script (sh) at an absolute path. */
function script(name: string, body: string): string {
  const file = join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

test("a command gets the request on stdin and its action as argument, in a clean env; exit 0 is success", async () => {
  const seen = join(dir, "seen");
  const cmd = script(
    "ok.sh",
    `cat > ${seen}.json; echo "$1" > ${seen}.arg; env > ${seen}.env; echo '{"message":"starting vm-7"}'`,
  );
  process.env.HERD_SECRET_SHOULD_NOT_LEAK = "leak";
  try {
    const answer = await machineProvider(`exec:${cmd}`).call(request);
    assert.deepEqual(answer, { message: "starting vm-7" });
  } finally {
    delete process.env.HERD_SECRET_SHOULD_NOT_LEAK;
  }
  assert.deepEqual(JSON.parse(readFileSync(`${seen}.json`, "utf8")), request);
  assert.equal(readFileSync(`${seen}.arg`, "utf8").trim(), "request");
  const env = readFileSync(`${seen}.env`, "utf8");
  assert.doesNotMatch(env, /HERD_SECRET_SHOULD_NOT_LEAK/);
  assert.match(env, /^PATH=/m);
});

test("a command that fails says why: its exit code and the last lines of its stderr", async () => {
  const cmd = script("fail.sh", "echo 'quota exceeded in eu-1' >&2; exit 3");
  await assert.rejects(
    machineProvider(`exec:${cmd}`).call(request),
    /fail\.sh request exited with 3: quota exceeded in eu-1/,
  );
  const silent = script("quiet.sh", "exit 1");
  await assert.rejects(machineProvider(`exec:${silent}`).call(request), /exited with 1: no output/);
  await assert.rejects(
    machineProvider(`exec:${join(dir, "missing.sh")}`).call(request),
    /could not be run: .*ENOENT/,
  );
});

test("a command that takes too long is killed (with what it started in the foreground) and fails", async () => {
  const pidFile = join(dir, "child.pid");
  const cmd = script("slow.sh", `sleep 30 & echo $! > ${pidFile}; wait`);
  const started = Date.now();
  await assert.rejects(
    machineProvider(`exec:${cmd}`, { timeoutMs: 300 }).call(request),
    /no answer within 300 ms \(killed\)/,
  );
  assert.ok(Date.now() - started < 5000);
  const pid = Number(readFileSync(pidFile, "utf8"));
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(!alive(pid), "the sleep it started is gone too");
});

test("a command that leaves a machine running in the background answers at once", async () => {
  const pidFile = join(dir, "bg.pid");
  // The background process keeps the pipes open; herd does not wait for it.
  const cmd = script("bg.sh", `setsid sleep 30 & echo $! > ${pidFile}; echo '{"message":"started"}'`);
  const started = Date.now();
  try {
    assert.deepEqual(await machineProvider(`exec:${cmd}`, { timeoutMs: 10_000 }).call(request), {
      message: "started",
    });
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  } finally {
    try {
      process.kill(Number(readFileSync(pidFile, "utf8")), "SIGKILL");
    } catch {}
  }
});

test("bad --machine-provider values are refused naming the flag", () => {
  assert.throws(() => machineProvider("exec:relative/cmd"), /absolute path/);
  assert.throws(() => machineProvider("ftp://x"), /expected exec:/);
  assert.throws(() => machineProvider("https://provider.example/hook"), /--machine-provider-secret-file/);
});

/** A real local HTTP server answering each POST with `answer`, recording what it got. */
async function webhook(answer: (body: string) => { status: number; body: string }) {
  const got: { headers: IncomingMessage["headers"]; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      got.push({ headers: req.headers, body });
      const a = answer(body);
      res.writeHead(a.status, { "content-type": "application/json" });
      res.end(a.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/machines`;
  return { url, got, close: () => new Promise((r) => server.close(r)) };
}

const SECRET = "0123456789abcdef-secret";

test("a webhook gets the request POSTed and signed with the secret; a 2xx is success", async (t) => {
  const hook = await webhook(() => ({ status: 202, body: '{"message":"vm-9 booting"}' }));
  t.after(hook.close);
  const provider = machineProvider(hook.url, {
    secret: SECRET,
    guard: new UrlGuard({ allow: ["127.0.0.1"] }),
  });
  assert.equal(provider.name, new URL(hook.url).origin);
  assert.deepEqual(await provider.call(request), { message: "vm-9 booting" });
  const [got] = hook.got;
  assert.deepEqual(JSON.parse(got.body), request);
  const ts = got.headers["x-herd-timestamp"] as string;
  assert.ok(Math.abs(Number(ts) - Date.now() / 1000) < 10);
  assert.equal(got.headers["x-herd-signature"], signature(SECRET, ts, got.body));
  assert.notEqual(got.headers["x-herd-signature"], signature("another secret!!", ts, got.body));
});

test("a webhook that refuses, or is on an address the guard does not allow, fails and says why", async (t) => {
  const hook = await webhook(() => ({ status: 503, body: '{"error":"no capacity in eu-1"}' }));
  t.after(hook.close);
  const allowed = machineProvider(hook.url, {
    secret: SECRET,
    guard: new UrlGuard({ allow: ["127.0.0.1"] }),
  });
  await assert.rejects(allowed.call(request), /answered HTTP 503: \{"error":"no capacity in eu-1"\}/);
  const guarded = machineProvider(hook.url, { secret: SECRET, guard: new UrlGuard() });
  await assert.rejects(guarded.call(request), /loopback address.*--allow-fetch/);
  assert.equal(hook.got.length, 1, "the guarded call never reached it");
});

test("a webhook that does not answer in time fails", async (t) => {
  const server = createServer(() => {}); // never answers
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const provider = machineProvider(url, {
    secret: SECRET,
    guard: new UrlGuard({ allow: ["127.0.0.1"] }),
    timeoutMs: 300,
  });
  await assert.rejects(provider.call(request), /no answer within 300 ms/);
});
