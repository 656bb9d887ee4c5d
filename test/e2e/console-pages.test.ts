// The console's operations pages in a real browser (Debian's chromium driven
// by playwright-core, test/e2e/browser.ts), against a whole `herd up` with
// examples/hello: open a trace from the dependency map, silence an alert, a
// viewer who cannot cordon a node, a screenshot of every page (light, dark,
// and five at phone width). The 1 s figure is console-load.test.ts's.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Browser } from "playwright-core";
import { ensureRedis } from "../../src/addons/redis.ts";
import { launchBrowser, settled, shot, signIn, viewer } from "./browser.ts";
import { cleanupHerd, type Herd, startHerd, waitFor } from "./harness.ts";

const ARGS = ["--scrape-interval", "2s", "--alert-interval", "1s"];
let herd: Herd | undefined;
let browser: Browser | undefined;
let viewerToken: string;

before(async () => {
  herd = await startHerd({ example: true, extraArgs: ARGS });
  await waitFor(
    "hello answers through the gateway",
    async () => (await herd!.request("hello.localhost")).status === 200,
  );
  browser = await launchBrowser();
  const ok = (r: { status: number; body: unknown }) => {
    assert.ok(r.status < 300, JSON.stringify(r.body));
    return r.body as Record<string, string>;
  };
  viewerToken = (await viewer(herd)).token;
  // An alert that fires at once while hello runs.
  ok(
    await herd.api("PUT", "/alerts/rules/hello-up", {
      expr: 'sum by (app) (herd_instance_up{app="hello"}) > 0',
      severity: "warning",
      annotations: { summary: "hello is up (a test alert)" },
    }),
  );
});

after(async () => {
  await browser?.close();
  await cleanupHerd(herd);
});

const signedIn = (token: string, options?: Parameters<typeof signIn>[3]) =>
  signIn(browser!, herd!.url, token, options);

async function traffic(n: number): Promise<void> {
  for (let i = 0; i < n; i++) assert.equal((await herd!.request("hello.localhost")).status, 200);
}

test("open a trace from the dependency map; search, Top-N and the waterfall", async () => {
  await traffic(30);
  const { page, context, errors } = await signedIn(herd!.token);
  try {
    // The gateway's spans reach the store within a few seconds: reload the map until hello is on it.
    await page.goto(`${herd!.url}/traces/map`);
    const node = page.locator("[data-testid^='node-'][data-testid*='hello']").first();
    for (let waited = 0; (await node.count()) === 0; waited += 2000) {
      assert.ok(waited < 60_000, "hello not on the map within 60 s of traffic");
      await traffic(5);
      await page.waitForTimeout(2000);
      await page.reload();
      await settled(page, errors);
    }
    await shot(page, "traces-map");
    await node.click();
    const link = page.getByTestId("map-traces").getByTestId("trace-link").first();
    await link.waitFor();
    await shot(page, "traces-map-selected");
    await link.click();
    await page.waitForURL(/\/traces\/[0-9a-f]{16,32}/);
    await page.getByTestId("span-row").first().waitFor();
    assert.match((await page.getByTestId("waterfall").textContent()) ?? "", /hello/);
    await page.getByTestId("span-row").first().getByRole("button").click();
    await page.locator(".span-detail").waitFor();
    await shot(page, "trace-waterfall");

    // A log line that carries this trace's id links to it from the live logs.
    const traceId = new URL(page.url()).pathname.split("/").pop() ?? "";
    const instances = await herd!.api<{ items: { id: string; node: string; app: string }[] }>(
      "GET",
      "/instances",
    );
    const hello = instances.body.items.find((i) => i.app === "hello")!;
    const shipped = await herd!.api("POST", "/logs", {
      node: hello.node,
      lines: [
        {
          instance: hello.id,
          time: new Date().toISOString(),
          stream: "stdout",
          line: JSON.stringify({ level: "info", msg: "served a traced request", trace_id: traceId }),
        },
      ],
    });
    assert.ok(shipped.status < 300, JSON.stringify(shipped.body));
    await page.goto(`${herd!.url}/apps/hello/logs`);
    const traced = page.getByTestId("log-trace").first();
    await traced.waitFor();
    await traced.click();
    await page.waitForURL(new RegExp(`/traces/${traceId}`));
    await page.getByTestId("span-row").first().waitFor();

    await page.goto(`${herd!.url}/traces?app=hello`);
    await page.getByTestId("trace-results").getByTestId("trace-link").first().waitFor();
    await shot(page, "traces-search");
    await page.goto(`${herd!.url}/traces/top`);
    await page.getByText(/Services by calls/).waitFor();
    await settled(page);
    await shot(page, "traces-top");
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("silence a firing alert from the alerts page", async () => {
  const { page, context, errors } = await signedIn(herd!.token);
  try {
    await page.goto(`${herd!.url}/alerts`);
    const row = page.getByTestId("alert-hello-up");
    await row.filter({ hasText: "firing" }).waitFor({ timeout: 60_000 });
    await shot(page, "alerts-firing");
    await row.getByTestId("silence-open-hello-up").click();
    await row.getByRole("button", { name: "Silence", exact: true }).click();
    await row.getByTestId("silenced").waitFor({ timeout: 30_000 });
    await page.getByTestId("silences").getByText("active").first().waitFor();
    const silences = await herd!.api<{
      items: { matchers: { name: string; value: string }[]; state: string }[];
    }>("GET", "/alerts/silences");
    const active = silences.body.items.filter((s) => s.state === "active");
    assert.equal(active.length, 1);
    assert.ok(active[0].matchers.some((m) => m.name === "alertname" && m.value === "hello-up"));
    await shot(page, "alerts-silenced");
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("an admin cordons and uncordons a node; a viewer has no such button and the API refuses it", async () => {
  const admin = await signedIn(herd!.token);
  try {
    const { page } = admin;
    await page.goto(`${herd!.url}/nodes`);
    const cordon = page.locator("[data-testid^='cordon-']").first();
    await cordon.waitFor();
    const name = ((await cordon.getAttribute("data-testid")) ?? "").slice("cordon-".length);
    await cordon.click();
    await page.getByTestId("cordoned").waitFor();
    await shot(page, "nodes-cordoned");
    await page.getByTestId(`uncordon-${name}`).click();
    await page.getByTestId(`cordon-${name}`).waitFor();
    const nodes = await herd!.api<{ items: { name: string; schedulable: boolean }[] }>("GET", "/nodes");
    assert.equal(nodes.body.items.find((n) => n.name === name)?.schedulable, true);
    // Remove is offered only for a drained or lost node: not for this ready one.
    assert.equal(await page.getByTestId(`remove-${name}`).count(), 0);
    await shot(page, "nodes");
    assert.deepEqual(admin.errors, []);
  } finally {
    await admin.context.close();
  }
  const viewer = await signedIn(viewerToken);
  try {
    const { page } = viewer;
    await page.goto(`${herd!.url}/nodes`);
    await page.locator(".meter").first().waitFor();
    await settled(page);
    assert.equal(await page.locator("[data-testid^='cordon-'], [data-testid^='drain-']").count(), 0);
    assert.equal(await page.getByRole("button", { name: /Cordon|Drain/ }).count(), 0);
    await shot(page, "viewer-nodes");
    const status = await page.evaluate(async (token) => {
      const r = await fetch("/api/v1/nodes/local/cordon", {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: "{}",
      });
      return r.status;
    }, viewerToken);
    assert.equal(status, 403);
    // Nor may it silence: the alerts page shows no Silence button.
    await page.goto(`${herd!.url}/alerts`);
    await page.getByTestId("alert-hello-up").waitFor({ timeout: 30_000 });
    assert.equal(await page.getByRole("button", { name: /Silence/ }).count(), 0);
  } finally {
    await viewer.context.close();
  }
});

test("an admin lets a tenant's containers run as their image's user from the quotas page, and takes it back", async () => {
  const { page, context, errors } = await signedIn(herd!.token);
  try {
    await page.goto(`${herd!.url}/quotas`);
    const state = page.getByTestId("image-user-default");
    await state.filter({ hasText: "the tenant's uid" }).waitFor();
    const toggle = page.getByTestId("image-user-toggle-default");
    await toggle.click();
    // It asks first: root in an image is the host's root.
    await page.getByRole("button", { name: "Confirm: images may run as root" }).click();
    await state.filter({ hasText: "their image's own user" }).waitFor();
    assert.equal(
      (await herd!.api<{ allowImageUser?: boolean }>("GET", "/tenants/default")).body.allowImageUser,
      true,
    );
    await shot(page, "quotas-image-user");
    await page.getByRole("button", { name: "Deny image user" }).click();
    await state.filter({ hasText: "the tenant's uid" }).waitFor();
    assert.equal(
      (await herd!.api<{ allowImageUser?: boolean }>("GET", "/tenants/default")).body.allowImageUser,
      undefined,
    );
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
  const viewer = await signedIn(viewerToken);
  try {
    await viewer.page.goto(`${herd!.url}/quotas`);
    await viewer.page.getByTestId("image-user-default").waitFor();
    assert.equal(await viewer.page.getByTestId("image-user-toggle-default").count(), 0);
  } finally {
    await viewer.context.close();
  }
});

const PAGES = [
  ["overview", "/"],
  ["app", "/apps/hello"],
  ["app-runs", "/apps/hello/runs"],
  ["app-traffic", "/apps/hello/traffic"],
  ["app-config", "/apps/hello/config"],
  ["app-automation", "/apps/hello/automation"],
  ["metrics", "/charts"],
  ["traces", "/traces"],
  ["traces-map", "/traces/map"],
  ["traces-top", "/traces/top"],
  ["alerts", "/alerts"],
  ["nodes", "/nodes"],
  ["gateways", "/gateways"],
  ["quotas", "/quotas"],
  ["team", "/team"],
  ["addons", "/addons"],
  ["events", "/events"],
  ["catalog", "/catalog"],
  ["catalog-app", "/catalog/hello"],
] as const;

test("screenshots of every page, light and dark; the map, metrics, alerts and two app tabs at phone width", async () => {
  await traffic(20);
  for (const dark of [false, true]) {
    const { page, context, errors } = await signedIn(herd!.token, { dark });
    try {
      for (const [name, path] of PAGES) {
        await page.goto(`${herd!.url}${path}`);
        await settled(page, errors);
        await page.waitForTimeout(300);
        await shot(page, `${dark ? "dark" : "light"}-${name}`);
      }
      await page.goto(`${herd!.url}/charts?q=${encodeURIComponent("sum(herd_instance_up)")}`);
      await page.locator(".chart:not([data-empty]) canvas").first().waitFor({ timeout: 30_000 });
      await shot(page, `${dark ? "dark" : "light"}-metrics-promql`);
      await page.goto(`${herd!.url}/catalog?name=hello-nothing`);
      await settled(page);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  }
  const phone = await signedIn(herd!.token, { width: 390, height: 844, dark: true });
  try {
    for (const [name, path] of [
      ["map", "/traces/map"],
      ["metrics", "/charts"],
      ["alerts", "/alerts"],
      ["app-traffic", "/apps/hello/traffic"],
      ["app-config", "/apps/hello/config"],
    ]) {
      await phone.page.goto(`${herd!.url}${path}`);
      await settled(phone.page);
      await phone.page.waitForTimeout(300);
      const overflow = (await phone.page.evaluate(
        "document.documentElement.scrollWidth - window.innerWidth",
      )) as number;
      // The message names what sticks out (outside the tables' own scrolling boxes).
      const wide =
        overflow > 0
          ? await phone.page.evaluate(
              "[...document.querySelectorAll('main *')].filter((e) => e.getBoundingClientRect().right > innerWidth + 1 && !e.closest('.scroll')).slice(-3).map((e) => e.tagName.toLowerCase() + (e.dataset.testid ? '[' + e.dataset.testid + ']' : '') + ' ' + Math.round(e.getBoundingClientRect().width) + ' px').join(', ')",
            )
          : "";
      assert.ok(overflow <= 0, `${path} is ${overflow} px wider than the phone: ${wide}`);
      await shot(phone.page, `phone-dark-${name}`);
    }
  } finally {
    await phone.context.close();
  }
});

// Last: binding the add-on redeploys hello, which the tests above send traffic to.
test("add-ons: a redis add-on made on the page and bound to hello, backed up, scheduled, rotated, detached, destroyed with a final backup and restored from it; a viewer has no buttons", async () => {
  await ensureRedis();
  const { page, context, errors } = await signedIn(herd!.token);
  const api = <T>(path: string) => herd!.api<T>("GET", path).then((r) => r.body);
  const confirm = (name: string | RegExp) => page.getByRole("button", { name }).click();
  try {
    await page.goto(`${herd!.url}/addons`);
    await page.getByTestId("addons-none").waitFor();
    // A name the API refuses: its message is shown, nothing is made.
    await page.getByTestId("addon-kind").selectOption("redis");
    await page.getByTestId("addon-name").fill("9cache");
    await page.getByTestId("addon-create").click();
    await page.getByRole("alert").filter({ hasText: /name/ }).waitFor();
    assert.equal((await api<{ items: unknown[] }>("/addons")).items.length, 0);

    await page.getByTestId("addon-name").fill("cache");
    await page.getByTestId("addon-app").selectOption("hello");
    await page.getByTestId("addon-create").click();
    await page
      .getByTestId("addon-made")
      .filter({ hasText: /hello gets REDIS_URL/ })
      .waitFor({ timeout: 180_000 });
    await page.getByTestId("addon-state-cache").filter({ hasText: "running" }).waitFor({ timeout: 120_000 });
    assert.match((await page.getByTestId("binding-cache-hello").textContent()) ?? "", /hello.*REDIS_URL/);

    await page.getByTestId("backup-now-cache").click();
    const row = page.getByTestId("backups-cache").locator("tbody tr");
    await row.first().waitFor({ timeout: 60_000 });
    assert.match((await row.first().textContent()) ?? "", /manual.*the keyspace/);
    const listed = await api<{ items: { id: string }[] }>("/addons/cache/backups");
    assert.equal(listed.items.length, 1);
    const [{ id }] = listed.items;
    await shot(page, "addons");
    await page.getByTestId(`delete-backup-${id}`).click();
    await confirm(`Confirm delete ${id}`);
    await page.getByTestId(`backup-${id}`).waitFor({ state: "detached" });
    assert.equal((await api<{ items: unknown[] }>("/addons/cache/backups")).items.length, 0);

    await page.getByTestId("schedule-cache").fill("0 3 * * *");
    await page.getByTestId("set-schedule-cache").click();
    await page.getByTestId("addon-state-cache").filter({ hasText: "backups 0 3 * * *, keeping 7" }).waitFor();
    assert.deepEqual((await api<{ backupPolicy?: unknown }>("/addons/cache")).backupPolicy, {
      schedule: "0 3 * * *",
      keep: 7,
    });

    await page.getByTestId("rotate-cache-hello").click();
    await confirm("Confirm new credentials for hello");
    const outcome = page.getByTestId("addon-outcome-cache");
    await outcome.filter({ hasText: /New credentials for hello/ }).waitFor({ timeout: 60_000 });
    assert.match((await outcome.textContent()) ?? "", /deploy \S+ \(hello\)/);
  } finally {
    await context.close();
  }
  const viewer = await signedIn(viewerToken);
  try {
    await viewer.page.goto(`${herd!.url}/addons`);
    await viewer.page.getByTestId("addon-state-cache").waitFor();
    assert.equal(
      await viewer.page
        .getByRole("button", { name: /Create add-on|Back up now|Bind|Rotate|Detach|Destroy|Restore|Delete/ })
        .count(),
      0,
    );
    assert.equal(await viewer.page.getByTestId("addon-create").count(), 0);
  } finally {
    await viewer.context.close();
  }
  const again = await signedIn(herd!.token);
  try {
    const p = again.page;
    await p.goto(`${herd!.url}/addons`);
    await p.getByTestId("detach-cache-hello").click();
    await p.getByRole("button", { name: "Confirm detach hello" }).click();
    await p
      .getByTestId("addon-outcome-cache")
      .filter({ hasText: /hello no longer gets REDIS_URL/ })
      .waitFor({
        timeout: 60_000,
      });
    await waitFor(
      "cache bound to no app",
      async () => (await api<{ bindings: unknown[] }>("/addons/cache")).bindings.length === 0,
    );

    await p.getByTestId("destroy-cache").click();
    await p.getByRole("button", { name: "Confirm destroy cache (a final backup is kept)" }).click();
    await p.getByTestId("addon-state-cache").waitFor({ state: "detached", timeout: 60_000 });
    const finals = await api<{ items: { id: string; addon: string }[] }>("/addon-backups");
    assert.deepEqual(
      finals.items.map((f) => f.addon),
      ["cache"],
    );
    const [{ id: finalId }] = finals.items;
    await p.getByTestId(`final-${finalId}`).waitFor({ timeout: 20_000 });

    // Restored into a new add-on of its name; then the final backup is forgotten.
    await p.getByTestId(`final-restore-${finalId}`).click();
    await p.getByTestId("addon-state-cache").filter({ hasText: "running" }).waitFor({ timeout: 120_000 });
    await p.getByTestId(`final-delete-${finalId}`).click();
    await p.getByRole("button", { name: `Confirm delete ${finalId} (gone for good)` }).click();
    await p.getByTestId(`final-${finalId}`).waitFor({ state: "detached" });
    assert.equal((await api<{ items: unknown[] }>("/addon-backups")).items.length, 0);
    assert.deepEqual(errors, []);
    assert.deepEqual(again.errors, []);
  } finally {
    await again.context.close();
    await herd!.api("DELETE", "/addons/cache?confirm=cache&withoutBackup=true");
  }
});
