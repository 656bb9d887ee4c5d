// herd login, logout and whoami against a real control plane: the saved config
// (mode 0600), where server, token and tenant come from, and the refusals.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { apiCall } from "../api/testing.ts";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { type RunCliOptions, runCli } from "./test-api.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-cli-login-"));
const xdg = join(dir, "config");
const configFile = join(xdg, "herd", "config.json");
let alice: string;
let bob: string;
/** The context a login to the test server is saved as by default: its host and port. */
const host = () => new URL(server.url).host;

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
        `Saved as context ${host()}, now the current one, in ${configFile}.`,
        "",
      ].join("\n"),
    );
    assert.equal(statSync(configFile).mode & 0o777, 0o600);
    assert.equal(statSync(join(xdg, "herd")).mode & 0o777, 0o700);
    assert.deepEqual(JSON.parse(await readFile(configFile, "utf8")), {
      current: host(),
      contexts: { [host()]: { server: server.url, token: alice, tenant: "a", user: "user alice" } },
    });

    // Later commands need no flags: server, token and tenant come from the login.
    const who = await herd(["whoami"]);
    assert.equal(who.code, 0, who.err);
    assert.match(who.out, /^user alice\n/);
    assert.match(
      who.out,
      new RegExp(`context: ${host()}\nserver: ${server.url} \\(from context ${host()} in ${configFile}\\)`),
    );
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
      `herd: token ${spare.id} was revoked (the token came from context ${host()} in ${configFile}; sign in with \`herd login\` or pass --token)\n`,
    );
  });

  it("logout removes the saved login; --revoke also revokes the token", async () => {
    const spare = (await apiCall(server, "POST", "/tokens", { name: "spare" }, { token: bob })).body;
    assert.equal((await herd(["login", "--server", server.url], { stdin: spare.token })).code, 0);
    const out = await herd(["logout"]);
    assert.equal(out.code, 0, out.err);
    assert.equal(
      out.out,
      `Logged out of ${server.url}: removed the context ${host()}.\nToken ${spare.id} still works until revoked: herd tokens revoke ${spare.id}\n`,
    );
    assert.throws(() => statSync(configFile), { code: "ENOENT" });
    assert.equal((await apiCall(server, "GET", "/whoami", undefined, { token: spare.token })).status, 200);
    assert.match((await herd(["logout"])).out, /^Not logged in/);

    assert.equal((await herd(["login", "--server", server.url], { stdin: spare.token })).code, 0);
    const revoke = await herd(["logout", "--revoke", "--json"]);
    assert.equal(revoke.code, 0, revoke.err);
    assert.deepEqual(JSON.parse(revoke.out), {
      loggedOut: true,
      context: host(),
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

describe("herd context", () => {
  beforeEach(() => rmSync(configFile, { force: true }));
  const whoIs = async (o: Partial<RunCliOptions> = {}, ...flags: string[]) => {
    const r = await herd(["whoami", "--json", ...flags], o);
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out).name;
  };

  it("keeps one context per login, lists them without tokens, and switches between them", async () => {
    const none = await herd(["context"]);
    assert.equal(none.code, 0, none.err);
    assert.match(none.out, /^No contexts saved: `herd up` saves one/);
    const login = (who: string, ...flags: string[]) =>
      herd(["login", "--server", server.url, ...flags], { stdin: who });
    assert.equal((await login(alice, "--context", "a-ctx", "--tenant", "a")).code, 0);
    assert.equal((await login(bob, "--context", "b-ctx")).code, 0);
    assert.equal(await whoIs(), "user bob");

    const list = await herd(["context", "list"]);
    assert.equal(list.code, 0, list.err);
    assert.equal(
      list.out,
      [
        "CURRENT   NAME    SERVER" + " ".repeat(server.url.length - 3) + "USER         TENANT",
        `          a-ctx   ${server.url}   user alice   a`,
        `*         b-ctx   ${server.url}   user bob     -`,
        "",
      ].join("\n"),
    );
    assert.doesNotMatch(list.out + (await herd(["context", "--json"])).out, new RegExp(`${alice}|${bob}`));

    // One command in another context: --context, or HERD_CONTEXT (the flag wins).
    assert.equal(await whoIs({}, "--context", "a-ctx"), "user alice");
    assert.equal(await whoIs({ env: { HERD_CONTEXT: "a-ctx" } }), "user alice");
    assert.equal(await whoIs({ env: { HERD_CONTEXT: "a-ctx" } }, "--context", "b-ctx"), "user bob");

    const use = await herd(["context", "use", "a-ctx"]);
    assert.equal(use.code, 0, use.err);
    assert.equal(use.out, `Now using the context a-ctx (${server.url}).\n`);
    assert.equal(await whoIs(), "user alice");
    assert.equal((await herd(["context", "current"])).out, "a-ctx\n");

    // Names that are not there: an error naming the ones that are, exit 1.
    for (const argv of [
      ["context", "use", "nope"],
      ["context", "delete", "nope"],
      ["whoami", "--context", "nope"],
    ]) {
      const r = await herd(argv);
      assert.equal(r.code, 1, argv.join(" "));
      assert.equal(r.err, "herd: no context nope; the contexts are: a-ctx, b-ctx\n");
    }
    const usage = await herd(["context", "use"]);
    assert.equal(usage.code, 2);
    assert.match(usage.err, /say which context: herd context use NAME/);

    // A login again to the current context's server replaces it instead of adding one.
    assert.equal((await herd(["login"], { stdin: bob })).code, 0);
    const saved = JSON.parse(await readFile(configFile, "utf8"));
    assert.deepEqual(Object.keys(saved.contexts), ["a-ctx", "b-ctx"]);
    assert.equal(saved.contexts["a-ctx"].user, "user bob");

    // Deleting the current context leaves none current; deleting the last removes the file.
    const del = await herd(["context", "delete", "a-ctx"]);
    assert.equal(
      del.out,
      "Deleted the context a-ctx.\nNo context is current now: herd context use NAME (b-ctx).\n",
    );
    const current = await herd(["context", "current"]);
    assert.equal(current.code, 1);
    assert.match(current.err, /^herd: no current context: herd context use NAME/);
    assert.equal((await herd(["context", "delete", "b-ctx"])).code, 0);
    assert.throws(() => statSync(configFile), { code: "ENOENT" });
  });

  it("a context whose server is gone says so, and where the server came from", async () => {
    // A port nothing listens on: a server that stopped.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", () => r()));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    writeFileSync(
      configFile,
      JSON.stringify({
        current: "old",
        contexts: { old: { server: `http://127.0.0.1:${port}`, token: "t" } },
      }),
    );
    const r = await herd(["apps"]);
    assert.equal(r.code, 1);
    assert.equal(
      r.err,
      `herd: cannot reach the herd server at http://127.0.0.1:${port} (from context old in ${configFile}; herd context lists the others): is \`herd up\` running?\n`,
    );
  });

  it("logout removes the current context only and names the others", async () => {
    assert.equal(
      (await herd(["login", "--server", server.url, "--context", "one"], { stdin: alice })).code,
      0,
    );
    assert.equal((await herd(["login", "--server", server.url, "--context", "two"], { stdin: bob })).code, 0);
    const out = await herd(["logout"]);
    assert.equal(out.code, 0, out.err);
    assert.match(out.out, /^Logged out of .*: removed the context two\.\n/);
    assert.match(out.out, /\nOther contexts: one \(herd context use NAME\)\n$/);
    assert.deepEqual(Object.keys(JSON.parse(await readFile(configFile, "utf8")).contexts), ["one"]);
  });

  it("an older herd's login file still signs in, and becomes a context when saved again", async () => {
    writeFileSync(configFile, JSON.stringify({ server: server.url, token: alice, tenant: "a" }));
    assert.equal(await whoIs(), "user alice");
    const list = await herd(["context", "--json"]);
    assert.deepEqual(JSON.parse(list.out), {
      current: host(),
      items: [{ name: host(), current: true, server: server.url, user: null, tenant: "a" }],
    });
    assert.equal((await herd(["context", "use", host()])).code, 0);
    assert.deepEqual(JSON.parse(await readFile(configFile, "utf8")), {
      current: host(),
      contexts: { [host()]: { server: server.url, token: alice, tenant: "a" } },
    });
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
    const flag = await herd(["login", "--server", tls.url, "--ca", join(dir, "nope.pem")], {
      stdin: tls.adminToken,
    });
    assert.equal(flag.err, `herd: --ca ${join(dir, "nope.pem")}: no such file\n`);
    const r = await herd(["login", "--server", tls.url], {
      stdin: tls.adminToken,
      env: { HERD_CA: tls.caFile ?? "" },
    });
    assert.equal(r.code, 0, r.err);
    const saved = JSON.parse(await readFile(configFile, "utf8"));
    assert.equal(saved.contexts[saved.current].ca, tls.caFile);
    const who = await herd(["whoami", "--json"]);
    assert.equal(who.code, 0, who.err);
    assert.equal(JSON.parse(who.out).admin, true);
    // The CA of the context is checked by later commands; a CA file that is gone is named as the context's.
    rmSync(configFile);
    const withFlag = await herd(["login", "--server", tls.url, "--ca", tls.caFile ?? ""], {
      stdin: tls.adminToken,
    });
    assert.equal(withFlag.code, 0, withFlag.err);
    const copy = join(dir, "ca-copy.pem");
    writeFileSync(copy, await readFile(tls.caFile ?? "", "utf8"));
    const viaCopy = await herd(["whoami", "--json", "--ca", copy]);
    assert.equal(viaCopy.code, 0, viaCopy.err);
    const kept = JSON.parse(await readFile(configFile, "utf8"));
    kept.contexts[kept.current].ca = join(dir, "gone.pem");
    writeFileSync(configFile, JSON.stringify(kept));
    const gone = await herd(["whoami"]);
    assert.equal(gone.err, `herd: context ${kept.current}'s CA ${join(dir, "gone.pem")}: no such file\n`);
  });
});
