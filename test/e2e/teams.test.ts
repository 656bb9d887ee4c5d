// Teams, end to end with real processes: the platform admin makes tenants a
// and b, users alice (owner of a) and bob (viewer of a) and their tokens;
// alice signs in and deploys examples/hello into a; bob reads but cannot
// scale; neither sees tenant b; a revoked token stops at once; the audit
// trail shows alice's deploy and bob's refused scale.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { cleanupHerd, type Herd, ROOT, runCli, served, startHerd, waitFor } from "./harness.ts";

let herd: Herd;
/** A config home of our own: no login on this machine leaks in, and none is left behind. */
const home = mkdtempSync(join(tmpdir(), "herd-teams-"));
const tokens: Record<string, string> = {};

/** The CLI with HERD_SERVER and the given token (no login config unless `login` is set). */
const as = (who: string, args: string[], xdg = join(home, "nobody")) =>
  runCli(args, {
    env: { HERD_SERVER: herd.url, HERD_TOKEN: tokens[who] ?? who, XDG_CONFIG_HOME: xdg },
  });

async function ok(run: Promise<{ code: number; stdout: string; stderr: string }>): Promise<string> {
  const r = await run;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return r.stdout;
}

before(async () => {
  herd = await startHerd();
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(home, { recursive: true, force: true });
});

test("the platform admin creates tenants, users, roles and tokens", async () => {
  tokens.admin = herd.token;
  await ok(as("admin", ["tenants", "create", "a"]));
  await ok(as("admin", ["tenants", "create", "b"]));
  await ok(as("admin", ["users", "create", "alice"]));
  await ok(as("admin", ["users", "create", "bob"]));
  await ok(as("admin", ["members", "add", "alice", "--tenant", "a", "--role", "owner"]));
  await ok(as("admin", ["members", "add", "bob", "--tenant", "a", "--role", "viewer"]));
  for (const user of ["alice", "bob"]) {
    const created = JSON.parse(
      await ok(as("admin", ["tokens", "create", "laptop", "--user", user, "--json"])),
    );
    assert.match(created.token, /^herd_pat_[0-9a-f]{8}_/);
    tokens[user] = created.token;
  }
  // Something in tenant b that nobody in a may see.
  await ok(as("admin", ["apps", "create", "secret-b", "--tenant", "b"]));
  const users = await ok(as("admin", ["users"]));
  assert.match(users, /alice +user +a:owner/);
  assert.match(users, /bob +user +a:viewer/);
});

test("alice signs in with a piped token; the config is hers alone", async () => {
  const xdg = join(home, "alice");
  const r = await pipeInto(["login", "--server", herd.url], `${tokens.alice}\n`, { XDG_CONFIG_HOME: xdg });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^Logged in to http:\/\/127\.0\.0\.1:\d+ as user alice\.\nTenants: a \(owner\)\n/);
  const file = join(xdg, "herd", "config.json");
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const config = JSON.parse(readFileSync(file, "utf8")) as {
    current: string;
    contexts: Record<string, { token: string }>;
  };
  assert.equal(config.contexts[config.current]?.token, tokens.alice);
  const who = await runCli(["whoami"], { env: { XDG_CONFIG_HOME: xdg, HERD_SERVER: "", HERD_TOKEN: "" } });
  assert.equal(who.code, 0, who.stderr);
  assert.match(who.stdout, /^user alice\n/);
});

test("alice deploys examples/hello into tenant a with her token", async () => {
  const r = await as("alice", ["deploy", join(ROOT, "examples/hello")]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /http:\/\/hello\.localhost:\d+\//);
  // The gateway has the route a moment after the deploy.
  await served(herd, "hello.localhost", /^hi from hello-web-/);
  const apps = await ok(as("alice", ["apps"]));
  assert.match(apps, /^NAME .*\nhello +v1 /);
  assert.doesNotMatch(apps, /secret-b/);
});

test("bob, a viewer, reads ps and logs but cannot scale: 403 with the reason", async () => {
  assert.match(await ok(as("bob", ["ps", "--app", "hello"])), /running/);
  await waitFor("hello's output in bob's herd logs", async () =>
    /listening|hello-web/.test(await ok(as("bob", ["logs", "--app", "hello", "--tail", "50"]))),
  );
  const scale = await as("bob", ["scale", "web=3", "--app", "hello"]);
  assert.equal(scale.code, 1);
  assert.equal(
    scale.stderr,
    "herd: user bob is a viewer in tenant a: apps:write needs the deployer role or more\n",
  );
});

test("nobody in tenant a sees tenant b", async () => {
  for (const who of ["alice", "bob"]) {
    const r = await as(who, ["apps", "--tenant", "b"]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `herd: user ${who} has no role in tenant b\n`);
  }
  // Named without its tenant, b's app is simply not found in a.
  const ps = await as("alice", ["ps", "--app", "secret-b"]);
  assert.equal(ps.code, 1);
  assert.equal(ps.stderr, "herd: app secret-b does not exist (herd apps lists the apps)\n");
  assert.match(await ok(as("admin", ["apps", "--tenant", "b"])), /secret-b/);
});

test("a revoked token stops working at once", async () => {
  const created = JSON.parse(await ok(as("alice", ["tokens", "create", "short-lived", "--json"])));
  tokens.temp = created.token;
  assert.match(await ok(as("temp", ["whoami"])), /^user alice\n/);
  await ok(as("alice", ["tokens", "revoke", created.id]));
  const r = await as("temp", ["apps"]);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    new RegExp(`^herd: token ${created.id} was revoked \\(the token came from HERD_TOKEN`),
  );
  assert.match(await ok(as("alice", ["tokens"])), new RegExp(`${created.id} +short-lived .*by user alice`));
});

test("herd audit shows alice's deploy and bob's refused scale", async () => {
  for (const who of ["alice", "admin"]) {
    const out = await ok(as(who, ["audit", "--tenant", "a", "--app", "hello"]));
    assert.match(out, /user alice +create +POST \/apps\/hello\/deploys +a\/hello +20[12] +127\.0\.0\.1 +-/);
    assert.match(
      out,
      /user bob +create +POST \/apps\/hello\/scale +a\/hello +403 +127\.0\.0\.1 +user bob is a viewer in tenant a/,
    );
  }
  const refused = JSON.parse(await ok(as("alice", ["audit", "--actor", "bob", "--json"]))).items;
  assert.deepEqual(
    refused.map((e: { verb: string; status: number; tenant: string }) => [e.verb, e.status, e.tenant]),
    [["create", 403, "a"]],
  );
  const denied = await as("bob", ["audit"]);
  assert.equal(denied.code, 1);
  assert.match(denied.stderr, /audit:read needs the owner role or more/);
});

/** Runs the CLI with `input` piped to its stdin (`echo $TOKEN | herd login`). */
function pipeInto(
  args: string[],
  input: string,
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--no-warnings", join(ROOT, "src/cli/main.ts"), ...args], {
      cwd: ROOT,
      env: { ...process.env, HERD_SERVER: "", HERD_TOKEN: "", ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(input);
  });
}
