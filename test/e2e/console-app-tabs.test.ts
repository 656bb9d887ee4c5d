// The app page's Traffic, Config and Automation tabs and its secrets in a real
// browser (test/e2e/browser.ts) against a whole `herd up` with examples/hello:
// a deployer degrades a service and changes its traffic policies, sets and
// unsets secrets (a used one rolls out), sets config keys and files, sees
// every instance apply them, rolls back and aborts a gray version; an
// autoscaled app's decisions under a load step show up, and the remediation
// engine is paused, resumed and switched to dry run from the page. A viewer
// reads each and has no button.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Browser } from "playwright-core";
import { launchBrowser, shot, signIn, viewer } from "./browser.ts";
import { cleanupHerd, type Herd, startHerd, steadyTraffic, waitFor } from "./harness.ts";

let herd: Herd | undefined;
let browser: Browser | undefined;
let viewerToken: string;
const work = mkdtempSync(join(tmpdir(), "herd-console-tabs-"));

before(async () => {
  herd = await startHerd({ example: true });
  browser = await launchBrowser();
  viewerToken = (await viewer(herd)).token;
});

after(async () => {
  await browser?.close();
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

const signedIn = (token: string) => signIn(browser!, herd!.url, token);

test("config: a key and a file set from the app's config tab, a bad file refused, the change applied by every instance, rolled back, a gray version aborted; a viewer only reads", async () => {
  const { page, context, errors } = await signedIn(herd!.token);
  type Config = {
    head: { stable: number; gray?: unknown };
    config: { values: Record<string, string>; files: Record<string, unknown> } | null;
  };
  const config = async () => (await herd!.api<Config>("GET", "/apps/hello/config")).body;
  try {
    await page.goto(`${herd!.url}/apps/hello/config`);
    await page.getByTestId("config-head").filter({ hasText: "No config yet" }).waitFor();
    await page.getByTestId("config-name").fill("STYLE");
    await page.getByTestId("config-value").fill("loud");
    await page.getByTestId("config-message").fill("from the console");
    await page.getByTestId("config-save").click();
    const row = page.getByTestId("config-entry-STYLE");
    await row.filter({ hasText: "app v1" }).waitFor();
    assert.match((await row.textContent()) ?? "", /STYLE\s*loud/);
    assert.deepEqual((await config()).config?.values, { STYLE: "loud" });
    // A file that does not parse: refused with its name and where it broke, nothing stored.
    await page.getByLabel("Kind").selectOption("file");
    await page.getByTestId("config-name").fill("settings.json");
    await page.getByTestId("config-content").fill('{"pool": ');
    await page.getByTestId("config-save").click();
    await page
      .getByRole("alert")
      .filter({ hasText: /settings\.json: not valid JSON/ })
      .waitFor();
    assert.equal((await config()).head.stable, 1);
    await page.getByTestId("config-content").fill('{"pool": 4}');
    await page.getByTestId("config-save").click();
    await page.getByTestId("config-entry-settings.json").filter({ hasText: "json file" }).waitFor();
    assert.deepEqual(Object.keys((await config()).config?.files ?? {}), ["settings.json"]);
    // Every instance's agent reports it applied v2.
    const applied = page.getByTestId("config-applied").locator("tbody tr");
    await waitFor("every hello instance applied config v2", async () => {
      const rows = await applied.allTextContents();
      return rows.length >= 2 && rows.every((r) => /v2\s*v2/.test(r) && !r.includes("behind"));
    });
    // History: v2's changes, then back to v1's content as v3.
    await page.getByTestId("config-diff-v2").click();
    assert.match((await page.getByTestId("config-changes-v2").textContent()) ?? "", /settings\.json\s*added/);
    await page.getByTestId("config-rollback-v1").click();
    await page.getByRole("button", { name: "Confirm roll back to v1" }).click();
    await page.getByTestId("config-v3").filter({ hasText: "content of v1" }).waitFor();
    await page.getByTestId("config-entry-settings.json").waitFor({ state: "detached" });
    const now = await config();
    assert.equal(now.head.stable, 3);
    assert.deepEqual(now.config?.files, {});
    // A gray version to half of the instances, then withdrawn.
    await page.getByLabel("Kind").selectOption("key");
    await page.getByTestId("config-name").fill("STYLE");
    await page.getByTestId("config-value").fill("quiet");
    await page.getByLabel("Gray to %").fill("50");
    await page.getByTestId("config-save").click();
    await page.getByTestId("config-gray").filter({ hasText: "v4 to 50 % of instances" }).waitFor();
    await shot(page, "app-config-gray");
    await page.getByTestId("config-abort").click();
    await page.getByRole("button", { name: "Confirm: back to v3" }).click();
    await page.getByTestId("config-gray").waitFor({ state: "detached" });
    const after = await config();
    assert.equal(after.head.gray, undefined);
    assert.deepEqual(after.config?.values, { STYLE: "loud" });
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
  const viewer = await signedIn(viewerToken);
  try {
    await viewer.page.goto(`${herd!.url}/apps/hello/config`);
    await viewer.page.getByTestId("config-entry-STYLE").waitFor();
    await viewer.page.getByTestId("config-v1").waitFor();
    assert.equal(await viewer.page.getByTestId("config-save").count(), 0);
    assert.equal(await viewer.page.getByRole("button", { name: /Roll back|Unset|Promote|Abort/ }).count(), 0);
  } finally {
    await viewer.context.close();
  }
});

test("shared config: a platform namespace made by an admin on the page, pinned from hello's config tab, a new version given to the tenant and rolled back; a viewer only reads", async () => {
  type Config = { config: { values: Record<string, string>; origins: Record<string, string> } | null };
  const config = async () => (await herd!.api<Config>("GET", "/apps/hello/config")).body.config;
  const { page, context, errors } = await signedIn(herd!.token);
  try {
    // Reached from the app's config tab.
    await page.goto(`${herd!.url}/apps/hello/config`);
    await page.getByTestId("config-layers").waitFor();
    await page.getByRole("link", { name: "shared config" }).click();
    await page.getByTestId("shared-none").waitFor();
    await page.getByTestId("shared-new-name").fill("base");
    await page.getByTestId("shared-new-open").click();
    await page.waitForURL(/\/config\/platform\/base$/);
    await page.getByTestId("shared-empty").waitFor();
    await page.getByTestId("config-name").fill("TZ");
    await page.getByTestId("config-value").fill("UTC");
    await page.getByTestId("config-save").click();
    await page.getByTestId("shared-entry-TZ").filter({ hasText: "UTC" }).waitFor();
    await page.getByTestId("shared-head").filter({ hasText: "base@1" }).waitFor();

    await page.goto(`${herd!.url}/apps/hello/config`);
    await page
      .getByTestId("config-platform")
      .locator("option", { hasText: "base@1" })
      .waitFor({ state: "attached" });
    await page.getByTestId("config-platform").selectOption("base@1");
    await page.getByTestId("config-pin").click();
    await page.getByTestId("config-entry-TZ").filter({ hasText: "platform base@1" }).waitFor();
    assert.equal((await config())?.values.TZ, "UTC");

    // v2 of base, given to the default tenant's apps: hello pins it; then rolled back.
    await page.goto(`${herd!.url}/config/platform/base`);
    await page.getByTestId("config-name").fill("TZ");
    await page.getByTestId("config-value").fill("Europe/Paris");
    await page.getByTestId("config-save").click();
    await page.getByTestId("shared-head").filter({ hasText: "base@2" }).waitFor();
    await page.getByTestId("shared-gray-version").selectOption("2");
    await page.getByTestId("shared-gray-tenants").fill("default");
    await page.getByTestId("shared-gray").click();
    const result = page.getByTestId("shared-gray-result");
    await result.filter({ hasText: "default/hello: base@1 → @2" }).waitFor();
    await waitFor(
      "hello's config has TZ from base@2",
      async () => (await config())?.values.TZ === "Europe/Paris",
    );
    await shot(page, "shared-config");
    await page.getByTestId("shared-gray-rollback").click();
    await page.getByRole("button", { name: "Confirm roll back v2 from tenants default" }).click();
    await result.filter({ hasText: "default/hello: base@2 → @1" }).waitFor();
    assert.equal((await config())?.values.TZ, "UTC");
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
  const viewer = await signedIn(viewerToken);
  try {
    await viewer.page.goto(`${herd!.url}/config/platform/base`);
    await viewer.page.getByTestId("shared-entry-TZ").waitFor();
    for (const id of ["config-save", "shared-gray", "shared-new-name", "shared-unset-TZ"])
      assert.equal(await viewer.page.getByTestId(id).count(), 0, id);
    await viewer.page.goto(`${herd!.url}/apps/hello/config`);
    await viewer.page.getByTestId("config-entry-TZ").waitFor();
    assert.equal(await viewer.page.getByTestId("config-pin").count(), 0);
  } finally {
    await viewer.context.close();
  }
});

test("automation: an autoscaled app's scale-out under a load step is shown with why; the remediation engine paused, resumed and put in dry run from the page; a viewer has no button", async () => {
  writeFileSync(
    join(work, "server.js"),
    'import { createServer } from "node:http";\ncreateServer((req, res) => res.end("ok")).listen(Number(process.env.PORT));\n',
  );
  writeFileSync(join(work, "package.json"), '{ "type": "module" }\n');
  writeFileSync(
    join(work, "herd.yaml"),
    [
      "app: burst",
      "services:",
      "  web:",
      "    command: node server.js",
      "    resources: { cpu: 0.05, memory: 32Mi }",
      "    health: { path: / }",
      "    routes: [{ host: burst.localhost }]",
      "    autoscale: { min: 1, max: 3, target: { rps: 10 }, stableWindow: 6s, panicWindow: 2s, scaleDownDelay: 120s }",
      "",
    ].join("\n"),
  );
  const deployed = await herd!.cli(["deploy", work]);
  assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);
  type Policy = { paused: boolean; dryRun: boolean };
  const policy = async () => (await herd!.api<Policy>("GET", "/apps/burst/remediation")).body;
  const { page, context, errors } = await signedIn(herd!.token);
  try {
    await page.goto(`${herd!.url}/apps/burst/automation`);
    const scaled = page.getByTestId("autoscale-web");
    await scaled.filter({ hasText: "1 of 1..3 instances · 10 rps per instance" }).waitFor();
    const load = steadyTraffic(herd!.gatewayUrl, "burst.localhost", {
      connections: 4,
      rate: 60,
      maxSeconds: 40,
    });
    try {
      // The decision shows with its change and its reason.
      await scaled
        .locator("tbody tr")
        .filter({ hasText: /1 → [23]/ })
        .waitFor({ timeout: 30_000 });
    } finally {
      await load.stop();
    }
    assert.match((await scaled.locator("tbody tr").first().textContent()) ?? "", /rps/);
    await page.getByTestId("remediation-mode").filter({ hasText: /^on/ }).waitFor();
    await page.getByTestId("remediation-pause").click();
    await page.getByRole("button", { name: "Confirm: the engine leaves this app alone" }).click();
    await page.getByTestId("remediation-mode").filter({ hasText: "paused" }).waitFor();
    assert.equal((await policy()).paused, true);
    await shot(page, "app-automation-paused");
    await page.getByTestId("remediation-resume").click();
    await page.getByTestId("remediation-mode").filter({ hasText: /^on/ }).waitFor();
    assert.equal((await policy()).paused, false);
    await page.getByTestId("remediation-dry-run").click();
    await page.getByTestId("remediation-mode").filter({ hasText: "dry run" }).waitFor();
    assert.equal((await policy()).dryRun, true);
    await page.getByRole("button", { name: "Act again" }).click();
    await page.getByTestId("remediation-mode").filter({ hasText: /^on/ }).waitFor();
    assert.equal((await policy()).dryRun, false);
    assert.match((await page.getByTestId("remediation-rules").textContent()) ?? "", /errors.*error-rate/);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
  const viewer = await signedIn(viewerToken);
  try {
    await viewer.page.goto(`${herd!.url}/apps/burst/automation`);
    await viewer.page.getByTestId("autoscale-web").waitFor();
    await viewer.page.getByTestId("remediation-mode").waitFor();
    assert.equal(
      await viewer.page.getByRole("button", { name: /Pause|Resume|Dry run|Act again/ }).count(),
      0,
    );
  } finally {
    await viewer.context.close();
  }
});

test("traffic: a live route's policies shown and the route deleted; a service degraded to its fallback and restored, its limit and criticality set and sent back to herd.yaml; a viewer has no button", async () => {
  const put = await herd!.api("PUT", "/apps/hello/routes/beta", {
    service: "web",
    host: "beta.localhost",
    rateLimit: { rate: 50 },
    fallback: { status: 503, body: "come back later" },
  });
  assert.ok(put.status < 300, JSON.stringify(put.body));
  await waitFor("beta.localhost served", async () => (await herd!.request("beta.localhost")).status === 200);
  type Web = { services: { name: string; traffic?: Record<string, unknown> }[] };
  const traffic = async () =>
    (await herd!.api<Web>("GET", "/apps/hello")).body.services.find((s) => s.name === "web")?.traffic;
  const { page, context, errors } = await signedIn(herd!.token);
  try {
    await page.goto(`${herd!.url}/apps/hello/traffic`);
    const route = page.getByTestId("route-beta");
    await route.waitFor();
    assert.match((await route.textContent()) ?? "", /rate 50\/s.*fallback 503.*API beta/);
    // Degraded: the gateway answers the route's fallback at once; restored: hello again.
    await page.getByTestId("degrade-web").click();
    await page.getByRole("button", { name: "Confirm: web's routes answer their fallback" }).click();
    await page.getByTestId("degraded-web").waitFor();
    await waitFor("beta.localhost answers its fallback", async () => {
      const r = await herd!.request("beta.localhost");
      return r.status === 503 && r.body === "come back later";
    });
    await shot(page, "app-traffic-degraded");
    await page.getByTestId("degrade-web").click();
    await page.getByTestId("degraded-web").waitFor({ state: "detached" });
    await waitFor(
      "beta.localhost served again",
      async () => (await herd!.request("beta.localhost")).status === 200,
    );
    // A concurrency limit set live, then back to herd.yaml's (none).
    await page.getByTestId("traffic-web-limit").fill("40");
    await page.getByTestId("traffic-web-limit-set").click();
    const limit = page.getByTestId("traffic-web-concurrency");
    await limit.filter({ hasText: "at most 40 in flight set live" }).waitFor();
    assert.equal((await traffic())?.concurrency, 40);
    await page.getByTestId("traffic-web-concurrency-reset").click();
    await limit.filter({ hasText: "no limit" }).waitFor();
    await page.getByTestId("traffic-web-criticality-select").selectOption("low");
    await page.getByTestId("traffic-web-criticality-set").click();
    await page.getByTestId("traffic-web-criticality").filter({ hasText: "low" }).waitFor();
    assert.equal((await traffic())?.criticality, "low");
    await page.getByTestId("traffic-web-criticality-reset").click();
    await page.getByTestId("traffic-web-criticality-reset").waitFor({ state: "detached" });
    assert.equal(await traffic(), undefined);
    // The live route removed from the page; herd.yaml's stays.
    await page.getByTestId("route-delete-beta").click();
    await page.getByRole("button", { name: "Confirm delete beta" }).click();
    await route.waitFor({ state: "detached" });
    assert.equal((await herd!.api("GET", "/apps/hello/routes/beta")).status, 404);
    await page.getByTestId("route-hello.localhost/").waitFor();
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
  const viewer = await signedIn(viewerToken);
  try {
    await viewer.page.goto(`${herd!.url}/apps/hello/traffic`);
    await viewer.page.getByTestId("traffic-web-breaker").waitFor();
    assert.equal(
      await viewer.page
        .getByRole("button")
        .filter({ hasText: /Degrade|Set|Delete|Off|Back/ })
        .count(),
      0,
    );
  } finally {
    await viewer.context.close();
  }
});

test("secrets: set from the services tab rolls out the release that uses it (its deploy linked), unset refused while used; a viewer sees names only", async () => {
  const dir = join(work, "vault");
  mkdirSync(dir);
  writeFileSync(
    join(dir, "server.js"),
    'require("node:http").createServer((req, res) => res.end(String(process.env.TOKEN).length + " chars")).listen(Number(process.env.PORT));\n',
  );
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      "app: vault",
      "services:",
      "  web:",
      "    command: node server.js",
      "    resources: { cpu: 0.05, memory: 32Mi }",
      "    health: { path: / }",
      "    routes: [{ host: vault.localhost }]",
      "    env: { TOKEN: { secret: token } }",
      "",
    ].join("\n"),
  );
  assert.equal((await herd!.api("PUT", "/apps/vault/secrets/token", { value: "abc" })).status, 201);
  const deployed = await herd!.cli(["deploy", dir]);
  assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);
  assert.equal((await herd!.request("vault.localhost")).body, "3 chars");
  const { page, context, errors } = await signedIn(herd!.token);
  try {
    await page.goto(`${herd!.url}/apps/vault`);
    await page.getByTestId("secret-token").filter({ hasText: "v1" }).waitFor();
    await page.getByTestId("secret-name").fill("token");
    await page.getByTestId("secret-value").fill("a longer one");
    await page.getByTestId("secret-set").click();
    const rollout = page.getByTestId("secret-rollout");
    await rollout.filter({ hasText: "token is at v2; the release that uses it rolls out" }).waitFor();
    await page.getByTestId("secret-token").filter({ hasText: "v2" }).waitFor();
    // The value never comes back, not even into the form.
    assert.equal(await page.getByTestId("secret-value").inputValue(), "");
    assert.doesNotMatch((await page.locator("main").textContent()) ?? "", /a longer one/);
    await waitFor(
      "vault serves the new value",
      async () => (await herd!.request("vault.localhost")).body === "12 chars",
    );
    await rollout.getByRole("link").click();
    await page
      .getByText(/succeeded/)
      .first()
      .waitFor();
    await page.goBack();
    // Used by the release: unset is refused with the API's reason, and the secret stays.
    await page.getByTestId("secret-unset-token").click();
    await page.getByRole("button", { name: "Confirm unset token" }).click();
    await page.getByRole("alert").filter({ hasText: /token/ }).waitFor();
    await page.getByTestId("secret-token").waitFor();
    // One no release uses: set, then unset.
    await page.getByTestId("secret-name").fill("spare");
    await page.getByTestId("secret-value").fill("x");
    await page.getByTestId("secret-set").click();
    await rollout.filter({ hasText: "spare is at v1; no release uses it yet" }).waitFor();
    await page.getByTestId("secret-unset-spare").click();
    await page.getByRole("button", { name: "Confirm unset spare" }).click();
    await page.getByTestId("secret-spare").waitFor({ state: "detached" });
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
  const viewer = await signedIn(viewerToken);
  try {
    await viewer.page.goto(`${herd!.url}/apps/vault`);
    await viewer.page.getByTestId("secret-token").waitFor();
    assert.equal(await viewer.page.getByTestId("secret-set").count(), 0);
    assert.equal(await viewer.page.getByTestId("secret-unset-token").count(), 0);
  } finally {
    await viewer.context.close();
  }
});

test("team: a token made from the page is shown once and works until revoked; an owner changes a member's role, makes a service account with a token and deletes it; a viewer sees only their own tokens", async () => {
  const whoami = async (token: string) =>
    (await fetch(`${herd!.url}/api/v1/whoami`, { headers: { authorization: `Bearer ${token}` } })).status;
  const { page, context, errors } = await signedIn(herd!.token);
  try {
    // Reached from who you are, in the header.
    await page.getByTestId("whoami").click();
    await page.getByTestId("tokens-table-admin").getByText("this session").waitFor();
    await page.getByTestId("token-name-admin").fill("laptop");
    await page.getByTestId("token-create-admin").click();
    const made = page.getByTestId("token-made-admin");
    await made.waitFor();
    const secret = /herd_pat_\S+/.exec((await made.textContent()) ?? "")?.[0] ?? "";
    assert.equal(await whoami(secret), 200);
    await page.getByTestId("token-revoke-laptop").click();
    await page.getByRole("button", { name: "Confirm revoke laptop" }).click();
    await page.getByTestId("token-laptop").filter({ hasText: "by user admin" }).waitFor();
    assert.equal(await whoami(secret), 401);
    // Members: vera from viewer to deployer and back.
    const vera = page.getByTestId("member-vera");
    await vera.waitFor();
    await vera.getByLabel("role of vera").selectOption("deployer");
    await page.getByTestId("member-change-vera").click();
    await waitFor("vera is a deployer", async () =>
      (
        await herd!.api<{ items: { user: string; role: string }[] }>("GET", "/tenants/default/members")
      ).body.items.some((m) => m.user === "vera" && m.role === "deployer"),
    );
    await vera.getByLabel("role of vera").selectOption("viewer");
    await page.getByTestId("member-change-vera").click();
    await page.getByTestId("member-change-vera").and(page.locator(":disabled")).waitFor();
    // A service account with a token, then deleted: its token stops working.
    await page.getByLabel("Add").selectOption("account");
    await page.getByTestId("member-name").fill("ci");
    await page.getByTestId("member-add").click();
    await page.getByTestId("member-ci").filter({ hasText: "service account" }).waitFor();
    await page.getByTestId("member-tokens-ci").click();
    await page.getByTestId("token-name-ci").fill("deploy");
    await page.getByTestId("token-create-ci").click();
    const ciSecret =
      /herd_pat_\S+/.exec((await page.getByTestId("token-made-ci").textContent()) ?? "")?.[0] ?? "";
    assert.equal(await whoami(ciSecret), 200);
    await shot(page, "team");
    await page.getByTestId("member-remove-ci").click();
    await page.getByRole("button", { name: "Confirm delete ci and revoke its tokens" }).click();
    await page.getByTestId("member-ci").waitFor({ state: "detached" });
    assert.equal(await whoami(ciSecret), 401);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
  const viewer = await signedIn(viewerToken);
  try {
    await viewer.page.goto(`${herd!.url}/team`);
    await viewer.page.getByTestId("tokens-table-vera").getByText("this session").waitFor();
    await viewer.page.getByText("The members of default are its owners'").waitFor();
    assert.equal(await viewer.page.getByTestId("members").count(), 0);
  } finally {
    await viewer.context.close();
  }
});

test("platform admin: a tenant made on the quotas page with a quota and domains; a user made in it with a role and a first token that works; the user deleted and its token refused; a viewer has neither", async () => {
  const whoami = async (token: string) =>
    fetch(`${herd!.url}/api/v1/whoami`, { headers: { authorization: `Bearer ${token}` } });
  const { page, context, errors } = await signedIn(herd!.token);
  try {
    await page.goto(`${herd!.url}/quotas`);
    await page.getByTestId("tenant-name").fill("shop");
    await page.getByTestId("tenant-quota").fill("4");
    await page.getByTestId("tenant-domains").fill("shop.example.com");
    await page.getByTestId("tenant-create").click();
    await page.getByTestId("quota-shop").filter({ hasText: "0 units in use of 4" }).waitFor();
    assert.match((await page.getByTestId("domains-shop").textContent()) ?? "", /shop\.example\.com/);
    // The header's switcher knows the new tenant at once.
    await page
      .getByTestId("tenant-switcher")
      .locator("option", { hasText: "shop" })
      .waitFor({ state: "attached" });
    await page.getByTestId("domains-input-shop").fill("shop.example.com, shop.example.org");
    await page.getByTestId("domains-set-shop").click();
    await page.getByTestId("domains-shop").filter({ hasText: "shop.example.org" }).waitFor();
    assert.deepEqual((await herd!.api<{ domains?: string[] }>("GET", "/tenants/shop")).body.domains, [
      "shop.example.com",
      "shop.example.org",
    ]);

    await page.getByTestId("tenant-switcher").selectOption("shop");
    await page.getByTestId("whoami").click();
    await page.getByTestId("user-name").fill("alice");
    await page.getByTestId("user-role").selectOption("owner");
    await page.getByTestId("user-create").click();
    await page.getByTestId("user-alice").filter({ hasText: "owner in shop" }).waitFor();
    // The members of shop, above, list her at once (not at their next poll).
    await page.getByTestId("member-alice").waitFor({ timeout: 5000 });
    await page.getByTestId("token-name-alice").fill("laptop");
    await page.getByTestId("token-create-alice").click();
    const secret =
      /herd_pat_\S+/.exec((await page.getByTestId("token-made-alice").textContent()) ?? "")?.[0] ?? "";
    const answer = await whoami(secret);
    assert.equal(answer.status, 200);
    assert.deepEqual(((await answer.json()) as { tenants: unknown[] }).tenants, [
      { tenant: "shop", role: "owner" },
    ]);
    await shot(page, "team-users");
    await page.getByTestId("user-delete-alice").click();
    await page.getByRole("button", { name: "Confirm delete alice: roles go, tokens revoked" }).click();
    await page.getByTestId("user-alice").waitFor({ state: "detached" });
    assert.equal((await whoami(secret)).status, 401);
    // Nobody deletes themselves from here.
    assert.equal(await page.getByTestId("user-delete-admin").count(), 0);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
  const viewer = await signedIn(viewerToken);
  try {
    await viewer.page.goto(`${herd!.url}/team`);
    await viewer.page.getByTestId("tokens-table-vera").waitFor();
    assert.equal(await viewer.page.getByTestId("users").count(), 0);
    await viewer.page.goto(`${herd!.url}/quotas`);
    await viewer.page.getByTestId("quota-default").waitFor();
    assert.equal(await viewer.page.getByTestId("tenant-create").count(), 0);
    assert.equal(await viewer.page.getByTestId("domains-set-default").count(), 0);
  } finally {
    await viewer.context.close();
  }
});

test("runs: a scheduled job's last run shown; a command run from the page opens with its output and exit code; a long one stopped; a viewer cannot run", async () => {
  const dir = join(work, "cron");
  mkdirSync(dir);
  writeFileSync(
    join(dir, "server.js"),
    'require("node:http").createServer((req, res) => res.end("ok")).listen(Number(process.env.PORT));\n',
  );
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      "app: cron",
      "services:",
      "  web:",
      "    command: node server.js",
      "    resources: { cpu: 0.05, memory: 32Mi }",
      "    health: { path: / }",
      "jobs:",
      "  tick:",
      '    schedule: "*/3 * * * * *"',
      "    command: echo tick",
      "",
    ].join("\n"),
  );
  const deployed = await herd!.cli(["deploy", dir]);
  assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);
  const { page, context, errors } = await signedIn(herd!.token);
  try {
    await page.goto(`${herd!.url}/apps/cron/runs`);
    // Its runs start every 3 s: the last one may still be starting, earlier ones have succeeded.
    await page.getByTestId("job-tick").getByRole("link").waitFor({ timeout: 30_000 });
    await page
      .getByTestId("runs")
      .locator("tbody tr")
      .filter({ hasText: "job tick" })
      .filter({ hasText: "succeeded" })
      .first()
      .waitFor({ timeout: 30_000 });
    await page.getByTestId("run-command").fill("echo hello-from-run; exit 3");
    await page.getByTestId("run-start").click();
    await page.waitForURL(/\/apps\/cron\/runs\/run-/);
    const state = page.getByTestId("run-state");
    await state.filter({ hasText: "exit code 3" }).waitFor({ timeout: 30_000 });
    assert.match((await state.textContent()) ?? "", /failed/);
    await page.locator(".log .line.stdout", { hasText: "hello-from-run" }).waitFor({ timeout: 30_000 });
    await shot(page, "app-runs");
    await page.getByTestId("run-command").fill("sleep 60");
    await page.getByTestId("run-start").click();
    await state.filter({ hasText: "sleep 60" }).filter({ hasText: "running" }).waitFor({ timeout: 30_000 });
    const id = new URL(page.url()).pathname.split("/").pop() ?? "";
    await page.getByTestId(`run-stop-${id}`).click();
    await page.getByRole("button", { name: `Confirm stop ${id}` }).click();
    await state.filter({ hasText: "stopped" }).waitFor({ timeout: 30_000 });
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
  const viewer = await signedIn(viewerToken);
  try {
    await viewer.page.goto(`${herd!.url}/apps/cron/runs`);
    await viewer.page.getByTestId("job-tick").waitFor();
    assert.equal(await viewer.page.getByTestId("run-command").count(), 0);
    assert.equal(await viewer.page.getByRole("button", { name: "Stop" }).count(), 0);
  } finally {
    await viewer.context.close();
  }
});
