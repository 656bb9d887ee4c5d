// herd tokens, users, tenants, members, service-accounts and audit against a
// real control plane, as the platform admin, a tenant owner (alice) and a
// viewer (bob): tables, --json, and the refusals each role meets.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { apiCall } from "../api/testing.ts";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { runCli } from "./test-api.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-cli-teams-"));
let alice: string;
let bob: string;

const as =
  (token: () => string) =>
  (...argv: string[]) =>
    runCli(argv, { server: server.url, token: token(), cwd: dir });
const root = as(() => server.adminToken);
const asAlice = as(() => alice);
const asBob = as(() => bob);

/** Runs and expects exit 0; the output. */
async function ok(run: Promise<{ code: number; out: string; err: string }>): Promise<string> {
  const r = await run;
  assert.equal(r.code, 0, r.err);
  return r.out;
}

async function admin(method: string, path: string, body?: unknown) {
  const r = await apiCall(server, method, path, body);
  assert.ok(r.status < 300, `${method} ${path}: ${JSON.stringify(r.body)}`);
  return r.body;
}

before(async () => {
  server = await startServer({ dataDir: join(dir, "data"), port: 0, logger: silentLogger });
  await ok(root("tenants", "create", "a"));
  await ok(root("tenants", "create", "b"));
  await ok(root("users", "create", "alice"));
  await ok(root("users", "create", "bob"));
  await ok(root("members", "add", "alice", "--tenant", "a", "--role", "owner"));
  await ok(root("members", "add", "bob", "--tenant", "a", "--role", "viewer"));
  alice = JSON.parse(await ok(root("tokens", "create", "laptop", "--user", "alice", "--json"))).token;
  bob = JSON.parse(await ok(root("tokens", "create", "laptop", "--user", "bob", "--json"))).token;
  await admin("POST", "/apps?tenant=a", { name: "hello" });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("herd tokens", () => {
  it("creates a token, shows it once with a warning, lists and revokes it", async () => {
    const out = await ok(asAlice("tokens", "create", "ci", "--expires", "30d"));
    const secret = /^ {2}(herd_pat_\S+)$/m.exec(out)?.[1] ?? "";
    const id = secret.slice(9, 17);
    assert.match(out, new RegExp(`^Created user token ${id} \\(ci\\) for user alice, expires: in 30d\\.\\n`));
    assert.match(out, /This is the only time it is shown \(herd keeps only its hash\); store it now:/);
    assert.match(out, /Sign in with it: herd login --server http/);
    assert.equal((await apiCall(server, "GET", "/whoami", undefined, { token: secret })).status, 200);

    const list = await ok(asAlice("tokens"));
    assert.match(list, /^ID +NAME +KIND +FOR +CREATED +EXPIRES +LAST USED +REVOKED\n/);
    assert.match(list, new RegExp(`${id} +ci +user +user alice +\\d+s ago +in 30d +\\d+s ago +-`));
    const json = JSON.parse(await ok(asAlice("tokens", "--json")));
    assert.deepEqual(json.items.map((t: { name: string }) => t.name).sort(), ["ci", "laptop"]);
    assert.ok(
      json.items.every((t: Record<string, unknown>) => !("token" in t)),
      "no secrets in lists",
    );

    // bob cannot see it, nor revoke it.
    assert.match((await asBob("tokens", "--user", "alice")).err, /user bob may not see the tokens of alice/);
    assert.equal((await asBob("tokens", "revoke", id)).err, `herd: no token ${id}\n`);

    assert.equal(
      await ok(asAlice("tokens", "revoke", secret)),
      `Revoked token ${id} (ci, user alice): it no longer works.\n`,
    );
    assert.equal((await apiCall(server, "GET", "/whoami", undefined, { token: secret })).status, 401);
    assert.match(
      await ok(asAlice("tokens")),
      new RegExp(`${id} +ci +user +user alice +\\d+s ago +- +\\d+s ago +\\d+s ago by user alice`),
    );
  });

  it("machine tokens are for platform admins, and flags are checked before any call", async () => {
    const agent = await ok(root("tokens", "create", "n1", "--kind", "agent", "--node", "n1"));
    assert.match(agent, /^Created agent token [0-9a-f]{8} \(n1\) for node n1, expires: never\./);
    assert.match(agent, /^ {2}herd_agt_/m);
    assert.match(agent, /HERD_TOKEN=… herd agent --server http:\/\/127\.0\.0\.1:\d+ --name n1/);
    const ingest = JSON.parse(
      await ok(root("tokens", "create", "push", "--kind", "ingest", "--tenant", "b", "--json")),
    );
    assert.equal(ingest.tenant, "b");
    assert.match(ingest.token, /^herd_ing_/);
    assert.match(await ok(root("tokens", "--all")), /n1 +agent +node n1/);

    const refused = await asAlice("tokens", "create", "x", "--kind", "gateway");
    assert.equal(refused.code, 1);
    assert.equal(refused.err, "herd: only platform admins create gateway tokens\n");
    assert.match((await asAlice("tokens", "--all")).err, /only platform admins list every token/);
    for (const [argv, message] of [
      [["--kind", "agent"], /an agent token needs --node N/],
      [["--kind", "robot"], /--kind must be one of user, agent, gateway, ingest, join, not robot/],
      [["--expires", "3x"], /--expires must be a duration such as 12h, 30d or 1y, not 3x/],
      [["--node", "n1"], /--node is only for --kind agent/],
      [["--kind", "ingest"], /an ingest token needs --tenant T/],
    ] as const) {
      const r = await root("tokens", "create", "x", ...argv);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, message);
    }
    assert.match((await root("tokens", "revoke", "zz")).err, /expected a token id, 8 hex digits/);
  });
});

describe("herd users", () => {
  it("lists users with their roles, creates and deletes one (with confirmation)", async () => {
    const list = await ok(root("users"));
    assert.match(list, /^NAME +KIND +ROLES +CREATED\n/);
    assert.match(list, /admin +platform admin +- /);
    assert.match(list, /alice +user +a:owner /);
    assert.match(list, /bob +user +a:viewer /);
    assert.equal(
      await ok(root("users", "create", "carol")),
      "Created user carol.\nGive it a role: herd members add carol --tenant T --role viewer\n" +
        "Give it a token: herd tokens create laptop --user carol --expires 90d\n",
    );
    const unconfirmed = await root("users", "delete", "carol");
    assert.equal(unconfirmed.code, 2);
    assert.match(
      unconfirmed.err,
      /refusing to delete the user carol without confirmation: pass --confirm carol/,
    );
    assert.equal((await root("users", "delete", "carol", "--confirm", "bob")).code, 2);
    assert.equal(
      await ok(root("users", "delete", "carol", "--confirm", "carol")),
      "Deleted user carol: its roles are gone and its tokens revoked.\n",
    );
    const names = JSON.parse(await ok(root("users", "--json"))).items.map((u: { name: string }) => u.name);
    assert.deepEqual(names.sort(), ["admin", "alice", "bob"]);
    assert.equal((await root("users", "create", "alice")).err, "herd: user alice already exists\n");
    const refused = await asAlice("users");
    assert.equal(refused.code, 1);
    assert.equal(refused.err, "herd: platform:read is for platform admins; user alice is not one\n");
    // The machines are the platform's: the refusal says where a member sees their totals.
    const nodes = await asAlice("nodes");
    assert.equal(nodes.code, 1);
    assert.match(nodes.err, /platform:read is for platform admins; .*herd capacity shows the nodes' totals/);
  });
});

describe("herd tenants", () => {
  it("creates, lists, shows and gives domains; a member sees only its tenants and its role", async () => {
    assert.equal(
      await ok(
        root(
          "tenants",
          "create",
          "c",
          "--quota",
          "10",
          "--domain",
          "c.example.com",
          "--domain",
          "c.example.org",
        ),
      ),
      "Created tenant c.\nGive it an owner: herd members add USER --tenant c --role owner\n",
    );
    const list = await ok(root("tenants"));
    assert.match(list, /^NAME +QUOTA +DOMAINS +CREATED\n/);
    assert.match(list, /c +10 units +c\.example\.com c\.example\.org +\d+s ago/);
    assert.match(list, /default +none +- /);
    assert.equal(
      await ok(root("tenants", "show", "c")),
      [
        "tenant:  c",
        "quota:   0 units in use, limit 10",
        "domains: c.example.com, c.example.org",
        `created: ${JSON.parse(await ok(root("tenants", "show", "c", "--json"))).createdAt}`,
        "",
      ].join("\n"),
    );
    assert.equal(
      await ok(root("tenants", "domains", "c", "shop.example.net")),
      "Tenant c owns shop.example.net and their subdomains.\n",
    );
    const taken = await root("tenants", "domains", "b", "x.shop.example.net");
    assert.equal(taken.code, 1);
    assert.equal(
      taken.err,
      "herd: domain x.shop.example.net overlaps shop.example.net, which belongs to tenant c\n",
    );
    assert.equal(await ok(root("tenants", "domains", "c", "--none")), "Tenant c owns no domains now.\n");
    assert.equal((await root("tenants", "domains", "c")).code, 2);
    assert.equal(
      await ok(root("tenants", "limits", "c", "--upload", "10Mi", "--files", "500")),
      "Tenant c's deploys: upload 10 MiB, 500 files.\n",
    );
    assert.match(
      (await root("tenants", "limits", "c", "--upload", "lots")).err,
      /--upload lots: expected a size/,
    );
    assert.match(
      await ok(root("tenants", "show", "c")),
      /\nlimits: {2}upload 10 MiB, 500 files \(for its deploys\)\n/,
    );
    assert.equal(await ok(root("tenants", "limits", "c")), "Tenant c has the server's deploy limits.\n");
    assert.doesNotMatch(await ok(root("tenants", "show", "c")), /limits:/);
    assert.equal(
      await ok(root("tenants", "image-user", "c", "allow")),
      "Tenant c's containers run as their image's own user where the service says user: image (root when the image names none), the tenant's uid otherwise.\n",
    );
    assert.match(
      await ok(root("tenants", "show", "c")),
      /\nimages: {2}may run as their own user \(user: image;/,
    );
    assert.equal(
      await ok(root("tenants", "image-user", "c", "deny")),
      "Tenant c's containers run as the tenant's uid (user: image is refused).\n",
    );
    assert.doesNotMatch(await ok(root("tenants", "show", "c")), /images:/);
    assert.equal((await root("tenants", "image-user", "c")).code, 2);
    assert.match((await root("tenants", "image-user", "c", "yes")).err, /yes: expected allow or deny/);
    assert.equal(
      (await asAlice("tenants", "image-user", "a", "allow")).err,
      "herd: platform:write is for platform admins; user alice is not one\n",
    );

    const mine = await ok(asAlice("tenants"));
    assert.match(mine, /^NAME +ROLE +QUOTA +DOMAINS +CREATED\na +owner +none +- +\d+s ago\n$/);
    assert.equal((await asAlice("tenants", "show", "--json")).code, 0);
    assert.equal((await asAlice("tenants", "show", "b")).err, "herd: user alice has no role in tenant b\n");
    assert.equal(
      (await asAlice("tenants", "create", "x")).err,
      "herd: platform:write is for platform admins; user alice is not one\n",
    );
  });

  it("herd quota keeps working: show and set a tenant's quota", async () => {
    assert.equal(await ok(root("quota", "set", "5", "--tenant", "b")), "tenant b: 0 units in use, limit 5\n");
    assert.equal(await ok(root("quota", "--tenant", "b")), "tenant b: 0 units in use, limit 5\n");
    assert.equal(await ok(root("quota")), "tenant default: 0 units in use, no limit\n");
    // alice's only tenant is a: no --tenant needed.
    assert.equal(await ok(asAlice("quota")), "tenant a: 0 units in use, no limit\n");
    assert.equal(
      (await asAlice("quota", "set", "100")).err,
      "herd: platform:write is for platform admins; user alice is not one\n",
    );
  });
});

describe("herd members and service-accounts", () => {
  it("an owner lists, adds, changes and removes members; a viewer may not", async () => {
    const list = await ok(asAlice("members"));
    assert.match(
      list,
      /^USER +ROLE +KIND +ADDED +BY\nalice +owner +user +\d+s ago +user admin\nbob +viewer +user /,
    );
    assert.equal(
      await ok(asAlice("members", "add", "bob", "--role", "deployer")),
      "bob is now a deployer in tenant a.\n",
    );
    const json = JSON.parse(await ok(asAlice("members", "--json", "--tenant", "a")));
    assert.equal(json.items.find((m: { user: string }) => m.user === "bob").role, "deployer");
    assert.equal(
      await ok(asAlice("members", "add", "bob", "--role", "viewer")),
      "bob is now a viewer in tenant a.\n",
    );
    assert.match(
      (await asAlice("members", "add", "bob", "--role", "boss")).err,
      /--role must be one of owner, deployer, viewer, not boss/,
    );
    assert.match((await asAlice("members", "add", "bob")).err, /pass --role owner\|deployer\|viewer/);
    assert.equal(
      (await asAlice("members", "add", "nobody", "--role", "viewer")).err,
      "herd: no user nobody (a platform admin creates users: herd users create nobody)\n",
    );
    assert.equal(
      (await asAlice("members", "remove", "alice")).err,
      "herd: alice is the last owner of tenant a: add another owner first\n",
    );
    assert.equal(
      (await asBob("members")).err,
      "herd: user bob is a viewer in tenant a: members:read needs the owner role or more\n",
    );
    await ok(root("users", "create", "dave"));
    await ok(asAlice("members", "add", "dave", "--role", "viewer"));
    assert.equal(await ok(asAlice("members", "remove", "dave")), "dave is no longer a member of tenant a.\n");
  });

  it("an owner creates a service account, makes its token, and deleting it revokes the token", async () => {
    const created = await ok(asAlice("service-accounts", "create", "ci", "--role", "deployer"));
    assert.equal(
      created,
      "Created service account ci in tenant a (deployer).\n" +
        "Make its token (shown once): herd tokens create ci-token --user ci --expires 90d\n",
    );
    const token = JSON.parse(
      await ok(asAlice("tokens", "create", "ci-token", "--user", "ci", "--json")),
    ).token;
    const who = await apiCall(server, "GET", "/whoami", undefined, { token });
    assert.equal(who.body.name, "service account ci");
    assert.match(
      await ok(asAlice("service-accounts")),
      /^USER +ROLE +KIND .*\nci +deployer +service account /,
    );
    assert.match(await ok(asAlice("members")), /ci +deployer +service account/);
    assert.equal(
      (await asAlice("service-accounts", "delete", "bob")).err,
      "herd: tenant a has no service account bob (herd service-accounts lists them)\n",
    );
    assert.equal(
      await ok(asAlice("service-accounts", "delete", "ci")),
      "Deleted service account ci of tenant a; its tokens are revoked.\n",
    );
    assert.equal((await apiCall(server, "GET", "/whoami", undefined, { token })).status, 401);
  });
});

describe("refusals and the audit trail", () => {
  it("a viewer reads but cannot scale; the 403 says why", async () => {
    assert.equal((await asBob("ps", "--app", "hello")).code, 0);
    const scale = await asBob("scale", "web=2", "--app", "hello");
    assert.equal(scale.code, 1);
    assert.equal(
      scale.err,
      "herd: user bob is a viewer in tenant a: apps:write needs the deployer role or more\n",
    );
    assert.equal((await asBob("apps", "--tenant", "b")).err, "herd: user bob has no role in tenant b\n");
  });

  it("herd audit shows who wrote what, refusals included, as a table and as JSON", async () => {
    await asBob("scale", "web=3", "--app", "hello");
    const table = await ok(asAlice("audit", "--actor", "bob"));
    const lines = table.trimEnd().split("\n");
    assert.match(lines[0], /^TIME \(UTC\) +ACTOR +VERB +REQUEST +TENANT\/APP +STATUS +ADDRESS +MESSAGE$/);
    assert.match(
      lines.at(-1) ?? "",
      /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +user bob +create +POST \/apps\/hello\/scale +a\/hello +403 +127\.0\.0\.1 +user bob is a viewer in tenant a: apps:write needs the deployer role or more$/,
    );
    const json = JSON.parse(await ok(asAlice("audit", "--json", "--verb", "update", "--since", "1h")));
    assert.ok(json.items.length > 0);
    assert.ok(
      json.items.every((e: { verb: string; tenant: string }) => e.verb === "update" && e.tenant === "a"),
    );
    assert.ok(
      json.items.some(
        (e: { path: string; actor: string }) =>
          e.path === "/api/v1/tenants/a/members/bob" && e.actor === "user alice",
      ),
    );
    // A platform admin sees every tenant's writes, or one tenant's.
    type Entry = { tenant?: string; path: string };
    const all = JSON.parse(await ok(root("audit", "--json", "--limit", "1000"))).items as Entry[];
    assert.ok(all.some((e) => e.tenant === "a"));
    assert.ok(all.some((e) => e.path === "/api/v1/users" && e.tenant === undefined));
    const one = JSON.parse(await ok(root("audit", "--json", "--tenant", "a"))).items as Entry[];
    assert.ok(one.length > 0 && one.every((e) => e.tenant === "a"));
    assert.equal(JSON.parse(await ok(root("audit", "--json", "--limit", "1"))).items.length, 1);
    assert.equal(await ok(asAlice("audit", "--actor", "nobody")), "No audit entries match.\n");

    assert.equal(
      (await asBob("audit")).err,
      "herd: user bob is a viewer in tenant a: audit:read needs the owner role or more\n",
    );
    assert.match(
      (await asAlice("audit", "--verb", "read")).err,
      /--verb must be one of create, update, delete, not read/,
    );
    assert.match((await asAlice("audit", "--since", "yesterday")).err, /--since must be a duration like 10m/);
    assert.match((await asAlice("audit", "--since", "yesterday")).err, /usage: herd audit/);
  });
});
