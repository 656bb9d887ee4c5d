// herd login, logout and whoami against a real control plane: the saved config
// (mode 0600), where server, token and tenant come from, and the refusals.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { type RunningServer, startServer } from "../api/server.ts";
import { apiCall } from "../api/testing.ts";
import { silentLogger } from "../common/log.ts";
import { type RunCliOptions, runCli } from "./test-api.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-cli-login-"));
const xdg = join(dir, "config");
const configFile = join(xdg, "herd", "config.json");
let alice: string;
let bob: string;

/** The CLI with only the login config (no HERD_SERVER/HERD_TOKEN) unless told otherwise. */
const herd = (argv: string[], options: Partial<RunCliOptions> = {}) =>
  runCli(argv, { ...options, env: { XDG_CONFIG_HOME: xdg, ...options.env }, cwd: dir });

async function admin(method: string, path: string, body?: unknown) {
  const r = await apiCall(server, method, path, body);
  assert.ok(r.status < 300, `${method} ${path}: ${JSON.stringify(r.body)}`);
  return r.body;
}

before(async () => {
  server = await startServer({ dataDir: join(dir, "data"), port: 0, logger: silentLogger });
  for (const t of ["a", "b"]) await admin("POST", "/tenants", { name: t });
  for (const u of ["alice", "bob"]) await admin("POST", "/users", { name: u });
  await admin("PUT", "/tenants/a/members/alice", { role: "owner" });
  await admin("PUT", "/tenants/b/members/alice", { role: "viewer" });
  await admin("PUT", "/tenants/a/members/bob", { role: "viewer" });
  alice = (await admin("POST", "/tokens", { name: "laptop", user: "alice", expiresIn: "30d" })).token;
  bob = (await admin("POST", "/tokens", { name: "laptop", user: "bob" })).token;
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("herd login", () => {
  beforeEach(() => rmSync(configFile, { force: true }));

  it("checks a piped token, saves server, token and tenant privately, and says who you are", async () => {
    const r = await herd(["login", "--server", server.url, "--tenant", "a"], { stdin: `${alice}\n` });
    assert.equal(r.code, 0, r.err);
    assert.equal(
      r.out,
      [
        `Logged in to ${server.url} as user alice.`,
        "Tenants: a (owner), b (viewer)",
        "Default tenant: a",
        `Token ${alice.slice(9, 17)} (laptop) expires: in 30d`,
        `Saved in ${configFile}.`,
        "",
      ].join("\n"),
    );
    assert.equal(statSync(configFile).mode & 0o777, 0o600);
    assert.equal(statSync(join(xdg, "herd")).mode & 0o777, 0o700);
    assert.deepEqual(JSON.parse(await readFile(configFile, "utf8")), {
      server: server.url,
      token: alice,
      tenant: "a",
    });

    // Later commands need no flags: server, token and tenant come from the login.
    const who = await herd(["whoami"]);
    assert.equal(who.code, 0, who.err);
    assert.match(who.out, /^user alice\n/);
    assert.match(who.out, new RegExp(`server: ${server.url} \\(from ${configFile}\\)`));
    assert.match(who.out, /tenant: a\n/);
    assert.match(who.out, /TENANT +ROLE\na +owner\nb +viewer\n/);
    const members = await herd(["members", "--json"]);
    assert.equal(members.code, 0, members.err);
    assert.deepEqual(
      JSON.parse(members.out).items.map((m: { user: string }) => m.user),
      ["alice", "bob"],
    );
  });

  it("takes --json, and warns when HERD_TOKEN would override the login", async () => {
    const r = await herd(["login", "--json"], {
      stdin: bob,
      env: { HERD_SERVER: server.url, HERD_TOKEN: alice },
    });
    assert.equal(r.code, 0, r.err);
    const reply = JSON.parse(r.out);
    assert.equal(reply.server, server.url);
    assert.equal(reply.whoami.name, "user bob");
    assert.deepEqual(reply.whoami.tenants, [{ tenant: "a", role: "viewer" }]);
    assert.match(r.err, /HERD_TOKEN is set in this shell/);
  });

  it("refuses an unknown token, a tenant you are not in and no token at all, saving nothing", async () => {
    const unknown = await herd(["login", "--server", server.url], { stdin: "herd_pat_00000000_nope\n" });
    assert.equal(unknown.code, 1);
    assert.equal(
      unknown.err,
      `herd: the server at ${server.url} refused the token: unknown token. Nothing was saved.\n`,
    );
    const notMember = await herd(["login", "--server", server.url, "--tenant", "b"], { stdin: bob });
    assert.equal(notMember.code, 1);
    assert.match(
      notMember.err,
      /user bob holds no role in tenant b; its tenants: a \(viewer\)\. Nothing was saved/,
    );
    const empty = await herd(["login", "--server", server.url], { stdin: "" });
    assert.equal(empty.code, 2);
    assert.match(empty.err, /no token given/);
    const noServer = await herd(["login"], { stdin: alice });
    assert.equal(noServer.code, 2);
    assert.match(noServer.err, /which server\? pass --server URL/);
    assert.throws(() => statSync(configFile), { code: "ENOENT" });
  });

  it("refuses a machine's token", async () => {
    const agent = (await admin("POST", "/tokens", { name: "n9", kind: "agent", node: "n9" })).token;
    const r = await herd(["login", "--server", server.url], { stdin: agent });
    assert.equal(r.code, 1);
    assert.match(
      r.err,
      /this token stands for agent n9, a machine; herd login takes a user's or service account's token/,
    );
  });

  it("resolves flags > env > login config", async () => {
    assert.equal((await herd(["login", "--server", server.url, "--tenant", "a"], { stdin: alice })).code, 0);
    const name = async (o: Partial<RunCliOptions>, ...flags: string[]) =>
      JSON.parse((await herd(["whoami", "--json", ...flags], o)).out).name;
    assert.equal(await name({}), "user alice");
    assert.equal(await name({ env: { HERD_TOKEN: bob } }), "user bob");
    assert.equal(await name({ env: { HERD_TOKEN: bob } }, "--token", alice), "user alice");
    // The login's default tenant, then HERD_TENANT, then --tenant.
    const tenant = async (o: Partial<RunCliOptions>, ...flags: string[]) => {
      const r = await herd(["tenants", "show", "--json", ...flags], o);
      assert.equal(r.code, 0, r.err);
      return JSON.parse(r.out).name;
    };
    assert.equal(await tenant({}), "a");
    assert.equal(await tenant({ env: { HERD_TENANT: "b" } }), "b");
    assert.equal(await tenant({ env: { HERD_TENANT: "b" } }, "--tenant", "a"), "a");
    // Another server: the login's token is not sent there.
    const other = await herd(["whoami"], { env: { HERD_SERVER: "http://127.0.0.1:9" } });
    assert.equal(other.code, 1);
    assert.match(
      other.err,
      /no token for the herd server at http:\/\/127\.0\.0\.1:9: sign in with `herd login/,
    );
  });

  it("says where a refused token came from", async () => {
    const spare = (await apiCall(server, "POST", "/tokens", { name: "spare" }, { token: bob })).body;
    assert.equal((await herd(["login", "--server", server.url], { stdin: spare.token })).code, 0);
    assert.equal((await herd(["tokens", "revoke", spare.id])).code, 0);
    const r = await herd(["apps"]);
    assert.equal(r.code, 1);
    assert.equal(
      r.err,
      `herd: token ${spare.id} was revoked (the token came from ${configFile}; sign in with \`herd login\` or pass --token)\n`,
    );
  });

  it("logout removes the saved login; --revoke also revokes the token", async () => {
    const spare = (await apiCall(server, "POST", "/tokens", { name: "spare" }, { token: bob })).body;
    assert.equal((await herd(["login", "--server", server.url], { stdin: spare.token })).code, 0);
    const out = await herd(["logout"]);
    assert.equal(out.code, 0, out.err);
    assert.equal(
      out.out,
      `Logged out of ${server.url}: removed ${configFile}.\nToken ${spare.id} still works until revoked: herd tokens revoke ${spare.id}\n`,
    );
    assert.throws(() => statSync(configFile), { code: "ENOENT" });
    assert.equal((await apiCall(server, "GET", "/whoami", undefined, { token: spare.token })).status, 200);
    assert.match((await herd(["logout"])).out, /^Not logged in/);

    assert.equal((await herd(["login", "--server", server.url], { stdin: spare.token })).code, 0);
    const revoke = await herd(["logout", "--revoke", "--json"]);
    assert.equal(revoke.code, 0, revoke.err);
    assert.deepEqual(JSON.parse(revoke.out), {
      loggedOut: true,
      server: server.url,
      token: spare.id,
      revoked: true,
    });
    assert.equal((await apiCall(server, "GET", "/whoami", undefined, { token: spare.token })).status, 401);
    // A token that no longer works is still signed out of.
    const doomed = (await apiCall(server, "POST", "/tokens", { name: "doomed" }, { token: bob })).body;
    assert.equal((await herd(["login", "--server", server.url, "--token", doomed.token])).code, 0);
    await apiCall(server, "DELETE", `/tokens/${doomed.id}`);
    const gone = await herd(["logout", "--revoke"]);
    assert.equal(gone.code, 0, gone.err);
    assert.match(gone.out, /no longer worked \(revoked or expired\)/);
  });

  it("a damaged config file is named, with what to do", async () => {
    writeFileSync(configFile, "not json");
    const r = await herd(["apps"]);
    assert.equal(r.code, 1);
    assert.match(r.err, /config\.json: not valid JSON .*sign in again with `herd login`/);
    // herd login replaces it, and herd logout removes it.
    assert.equal((await herd(["login", "--server", server.url], { stdin: bob })).code, 0);
    assert.equal((await herd(["whoami", "--json"])).code, 0);
    writeFileSync(configFile, "not json");
    const out = await herd(["logout"]);
    assert.equal(out.code, 0, out.err);
    assert.match(out.out, /^Removed .*config\.json \(.*not valid JSON/);
    assert.throws(() => statSync(configFile), { code: "ENOENT" });
  });
});

describe("herd login over https", () => {
  let tls: RunningServer;
  before(async () => {
    tls = await startServer({ dataDir: join(dir, "tls"), port: 0, logger: silentLogger, tls: true });
  });
  after(() => tls.close());

  it("checks the server with HERD_CA and keeps the CA file with the login", async () => {
    rmSync(configFile, { force: true });
    const missing = await herd(["login", "--server", tls.url], {
      stdin: tls.adminToken,
      env: { HERD_CA: join(dir, "nope.pem") },
    });
    assert.equal(missing.code, 1);
    assert.equal(missing.err, `herd: HERD_CA ${join(dir, "nope.pem")}: no such file\n`);
    const r = await herd(["login", "--server", tls.url], {
      stdin: tls.adminToken,
      env: { HERD_CA: tls.caFile ?? "" },
    });
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(await readFile(configFile, "utf8")).ca, tls.caFile);
    const who = await herd(["whoami", "--json"]);
    assert.equal(who.code, 0, who.err);
    assert.equal(JSON.parse(who.out).admin, true);
  });
});
