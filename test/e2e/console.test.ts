// The web console in a real browser: Debian's chromium (installed by
// scripts/ensure-tools.ts when missing) driven by playwright-core, against a
// whole `herd up` with examples/hello. An admin signs in, sees hello, scales
// it, follows its logs, deploys a new release from an archive and rolls back;
// a viewer sees no button it may not press (and the API refuses it anyway).
// Screenshots of every page, light and dark, 1280 px and a phone, go to
// test/e2e/screenshots/ (git-ignored).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Browser, Locator } from "playwright-core";
import { create as tarCreate } from "tar";
import { launchBrowser, type SignedIn, shot, signIn, viewer } from "./browser.ts";
import { cleanupHerd, type Herd, ROOT, startHerd } from "./harness.ts";

const work = mkdtempSync(join(tmpdir(), "herd-console-"));
let herd: Herd;
let browser: Browser | undefined;
let viewerToken: string;
let viewerTokenId: string;

before(async () => {
  // Scraped every 2 s: the overview's sparklines have points within the test.
  herd = await startHerd({ example: true, extraArgs: ["--scrape-interval", "2s"] });
  browser = await launchBrowser();
  const ok = (r: { status: number; body: unknown }) => {
    assert.ok(r.status < 300, JSON.stringify(r.body));
    return r.body as Record<string, string>;
  };
  ok(await herd.api("POST", "/tenants", { name: "acme" }));
  ({ token: viewerToken, id: viewerTokenId } = await viewer(herd));
});

after(async () => {
  await browser?.close();
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

/** A signed-in page whose scripts raised nothing while signing in. */
async function signedIn(token: string, options?: Parameters<typeof signIn>[3]): Promise<SignedIn> {
  const signed = await signIn(browser!, herd.url, token, options);
  assert.deepEqual(signed.errors, []);
  return signed;
}

/** A locator's text ("" for none). */
const text = async (l: Locator) => (await l.textContent()) ?? "";

/** Some traffic through the gateway, so the overview's sparklines have something to draw. */
async function traffic(n: number): Promise<void> {
  for (let i = 0; i < n; i++) assert.equal((await herd.request("hello.localhost")).status, 200);
}

test("the control plane serves the console: types, caching, deep links, the API's 404", async () => {
  const index = await fetch(`${herd.url}/apps/hello/releases`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get("content-type") ?? "", /^text\/html/);
  assert.equal(index.headers.get("cache-control"), "no-cache");
  assert.match(index.headers.get("content-security-policy") ?? "", /default-src 'self'/);
  const html = await index.text();
  const script = html.match(/src="(\/assets\/[^"]+\.js)"/)?.[1];
  assert.ok(script, html);
  const js = await fetch(`${herd.url}${script}`, { headers: { "accept-encoding": "gzip" } });
  assert.equal(js.status, 200);
  assert.match(js.headers.get("content-type") ?? "", /^text\/javascript/);
  assert.match(js.headers.get("cache-control") ?? "", /immutable/);
  await js.arrayBuffer();
  assert.equal((await fetch(`${herd.url}/assets/gone-1234.js`)).status, 404);
  const api = await fetch(`${herd.url}/api/v1/nope`);
  assert.equal(api.status, 404);
  assert.deepEqual(await api.json(), { code: "not_found", message: "no route GET /api/v1/nope" });
});

test("a wrong token is refused on the sign-in page", async () => {
  const page = await browser!.newPage();
  try {
    await page.goto(`${herd.url}/`);
    await page.getByLabel("Token").fill("herd_pat_not-a-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").waitFor();
    assert.match(await text(page.getByRole("alert")), /401/);
    await shot(page, "sign-in-refused");
  } finally {
    await page.close();
  }
});

test("an admin sees hello, scales it, follows its logs, deploys from an archive and rolls back", async () => {
  await traffic(20);
  const { page, context } = await signedIn(herd.token);
  try {
    // Overview: hello with its state, release and instances.
    const row = page.getByTestId("app-row-hello");
    await row.waitFor();
    // The row's text as one: a poll may redraw a cell between two reads.
    await page
      .getByTestId("app-row-hello")
      .filter({ hasText: /running.*v1.*2\/2/ })
      .waitFor();
    await shot(page, "overview");

    // The app page, by clicking through.
    await row.getByRole("link", { name: "hello" }).click();
    await page.waitForURL(/\/apps\/hello$/);
    await page.getByTestId("running-web").waitFor();
    // The instance rows may come a moment after the service's line.
    await page.getByTestId("instance-row").nth(1).waitFor();
    assert.equal(await page.getByTestId("instance-row").count(), 2);
    await shot(page, "app");

    // Logs: the stream is open, the backlog is there, and a new line arrives live.
    await page.getByRole("link", { name: "Logs" }).click();
    await page.waitForURL(/\/apps\/hello\/logs$/);
    await page.getByTestId("log-status").filter({ hasText: "following" }).waitFor();
    await page.getByTestId("log-lines").filter({ hasText: "hello listening on" }).first().waitFor();

    // Scale from the Services tab: 3 instances, then the log shows the new one's start.
    await page.getByRole("link", { name: "Services" }).click();
    await page.getByTestId("scale-input-web").fill("3");
    await page.getByTestId("scale-web").click();
    await page.getByTestId("running-web").filter({ hasText: "3/3 running" }).waitFor({ timeout: 30_000 });
    assert.equal(await page.getByTestId("instance-row").count(), 3);
    const scaled = await herd.api<{ services: { name: string; instances: number }[] }>("GET", "/apps/hello");
    assert.equal(scaled.body.services[0].instances, 3);
    await shot(page, "app-scaled");

    // Restart from the same tab: three new instances, none of the old ones left.
    const ids = async () =>
      (
        await herd.api<{ items: { id: string; desired: string }[] }>("GET", "/apps/hello/instances")
      ).body.items
        .filter((i) => i.desired === "running")
        .map((i) => i.id);
    const old = await ids();
    await page.getByTestId("restart-web").click();
    for (let waited = 0; ; waited += 250) {
      const now = await ids();
      if (now.length === 3 && !now.some((id) => old.includes(id))) break;
      assert.ok(waited < 30_000, `not restarted within 30 s: ${now.join(", ")} (were ${old.join(", ")})`);
      await page.waitForTimeout(250);
    }
    await page.getByTestId("running-web").filter({ hasText: "3/3 running" }).waitFor({ timeout: 30_000 });

    // Follow: back on Logs, filtered to events, the scale shows up; a typed filter narrows the lines.
    await page.getByRole("link", { name: "Logs" }).click();
    await page.getByLabel("Stream").selectOption("event");
    await page.getByTestId("log-lines").filter({ hasText: "placed on" }).waitFor();
    const before = await page.locator("[data-testid=log-lines] .line").count();
    await herd.api("POST", "/apps/hello/scale", { services: { web: 2 } });
    const lines = page.locator("[data-testid=log-lines] .line");
    for (let waited = 0; (await lines.count()) <= before; waited += 200) {
      assert.ok(waited < 20_000, "no new log line within 20 s of the scale");
      await page.waitForTimeout(200);
    }
    await shot(page, "app-logs");

    // Deploy v2 from an uploaded archive (what `herd deploy` packs).
    const archive = join(work, "hello.tgz");
    await tarCreate({ gzip: true, file: archive, cwd: join(ROOT, "examples/hello") }, ["."]);
    await page.getByRole("link", { name: "Deploy", exact: true }).click();
    await page.getByTestId("deploy-file").setInputFiles(archive);
    await page.getByRole("button", { name: "Deploy to hello" }).click();
    await page.getByTestId("deploy-log").filter({ hasText: "v2 is serving" }).waitFor({ timeout: 180_000 });
    await shot(page, "app-deploy");

    // Releases: v2 serves; roll back to v1 (press, confirm), v3 serves v1's content.
    await page.getByRole("link", { name: "Releases" }).click();
    await page.getByTestId("release-v2").filter({ hasText: "serving" }).waitFor();
    assert.match(await text(page.getByTestId("release-v2")), /user admin/);
    await page.getByTestId("rollback-v1").click();
    await page.getByRole("button", { name: "Confirm roll back to v1" }).click();
    await page.getByTestId("release-v3").filter({ hasText: "serving" }).waitFor({ timeout: 120_000 });
    assert.match(await text(page.getByTestId("release-v3")), /content of v1.*user admin/s);
    await shot(page, "app-releases");

    // Deploys: the history with state and who; a deploy's id opens its build log (a deep link).
    await page.getByRole("link", { name: "Deploys", exact: true }).click();
    await page.waitForURL(/\/apps\/hello\/deploys$/);
    const history = await herd.api<{ items: { id: string; release?: number; createdBy?: string }[] }>(
      "GET",
      "/apps/hello/deploys",
    );
    assert.deepEqual(
      history.body.items.map((d) => [d.release, d.createdBy]),
      [
        [3, "user admin"],
        [2, "user admin"],
        [1, "user admin"],
      ],
    );
    const [rolled, archived] = history.body.items;
    await page
      .getByTestId(`deploy-${rolled.id}`)
      .filter({ hasText: "succeeded" })
      .waitFor({ timeout: 60_000 });
    assert.match(await text(page.getByTestId(`deploy-${rolled.id}`)), /rollback.*succeeded.*v3.*user admin/s);
    assert.match(await text(page.getByTestId(`deploy-${archived.id}`)), /succeeded.*v2.*user admin/s);
    await page.getByTestId(`deploy-${archived.id}`).getByRole("link", { name: archived.id }).click();
    await page.waitForURL(new RegExp(`/apps/hello/deploys/${archived.id}$`));
    const buildLog = page.getByTestId("deploy-history-log");
    await buildLog.filter({ hasText: "v2 is serving" }).waitFor();
    // As herd deploy prints it (common/deploy-log-format.ts), each entry after its time.
    assert.match(
      await text(buildLog),
      /^\d\d:\d\d:\d\d -----> Unpacking source /m,
      "the build output is there",
    );
    assert.match(await text(buildLog), /^\d\d:\d\d:\d\d -----> Release v2 created/m);
    await shot(page, "app-deploys");
    // The deep link opens the same log after a reload.
    await page.reload();
    await page.getByTestId("deploy-history-log").filter({ hasText: "v2 is serving" }).waitFor();

    // The app's Events tab (the top navigation has an Events page too).
    await page
      .getByRole("navigation", { name: "hello sections" })
      .getByRole("link", { name: "Events" })
      .click();
    await page.getByText("ReleaseCreated").first().waitFor();
    await shot(page, "app-events");

    // A deep link opens where it points, after a reload too.
    await page.goto(`${herd.url}/apps/hello/releases`);
    await page.getByTestId("release-v3").waitFor();
    await page.goto(`${herd.url}/no/such/page`);
    await page.getByRole("heading", { name: "Not found" }).waitFor();
  } finally {
    await context.close();
  }
});

test("a viewer sees hello but no scale, deploy or rollback control, and the API refuses it too", async () => {
  const { page, context } = await signedIn(viewerToken);
  try {
    assert.match(await text(page.getByTestId("whoami")), /vera · viewer/);
    await page.getByTestId("app-row-hello").waitFor();
    await page.goto(`${herd.url}/apps/hello`);
    await page.getByTestId("running-web").waitFor();
    assert.equal(await page.getByTestId("scale-web").count(), 0);
    assert.equal(await page.getByTestId("restart-web").count(), 0);
    assert.equal(await page.getByRole("button", { name: "Scale" }).count(), 0);
    await shot(page, "viewer-app");
    await page.getByRole("link", { name: "Releases" }).click();
    await page.getByTestId("release-v1").waitFor();
    assert.equal(await page.getByRole("button", { name: /Roll back/ }).count(), 0);
    // Who made each release is recorded on it: a viewer, who may not read the audit trail, sees it.
    assert.equal(await text(page.getByTestId("release-v1-by")), "user admin");
    await page.getByRole("link", { name: "Deploy", exact: true }).click();
    await page.getByText("Your role cannot deploy").waitFor();
    assert.equal(await page.getByTestId("deploy-file").count(), 0);
    // The API refuses what the page does not offer.
    const res = await page.evaluate(async (token) => {
      const r = await fetch("/api/v1/apps/hello/scale", {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ services: { web: 5 } }),
      });
      return r.status;
    }, viewerToken);
    assert.equal(res, 403);
    // The token revoked while the page is open: the next call is refused and the page asks to sign in.
    assert.equal((await herd.api("DELETE", `/tokens/${viewerTokenId}`)).status < 300, true);
    await page.getByRole("button", { name: "Sign in" }).waitFor({ timeout: 20_000 });
    await page.getByRole("alert").filter({ hasText: "401" }).waitFor();
  } finally {
    await context.close();
  }
});

test("the tenant switcher shows another tenant's apps, and its links keep the tenant", async () => {
  const { page, context } = await signedIn(herd.token);
  try {
    await page.getByTestId("app-row-hello").waitFor();
    await page.getByTestId("tenant-switcher").selectOption("acme");
    await page.waitForURL(/\?tenant=acme$/);
    await page.getByText("No apps in tenant acme").waitFor();
    assert.equal(await page.getByTestId("app-row-hello").count(), 0);
    // A deep link names its tenant; the app of another tenant is not found there.
    await page.goto(`${herd.url}/apps/hello?tenant=acme`);
    await page.getByRole("alert").filter({ hasText: "404" }).waitFor();
    assert.equal(
      await page.getByRole("link", { name: "Releases" }).getAttribute("href"),
      "/apps/hello/releases?tenant=acme",
    );
    await page.getByTestId("tenant-switcher").selectOption("default");
    await page.getByTestId("app-row-hello").waitFor();
  } finally {
    await context.close();
  }
});

test("screenshots: every page in dark and on a phone; the keyboard reaches sign-in and the tabs", async () => {
  const phone = await signedIn(herd.token, { width: 390, height: 844, dark: true });
  try {
    const { page } = phone;
    await page.getByTestId("app-row-hello").waitFor();
    // Nothing wider than the phone but the tables that scroll in their own box.
    const overflow = (await page.evaluate(
      "document.documentElement.scrollWidth - window.innerWidth",
    )) as number;
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than the phone`);
    await shot(page, "phone-dark-overview");
    for (const tab of ["", "/releases", "/deploys", "/logs", "/events", "/deploy"]) {
      await page.goto(`${herd.url}/apps/hello${tab}`);
      await page.getByRole("heading", { name: /hello/ }).first().waitFor();
      await page.waitForTimeout(500);
      const wider = (await page.evaluate(
        "document.documentElement.scrollWidth - window.innerWidth",
      )) as number;
      assert.ok(wider <= 0, `/apps/hello${tab} is ${wider} px wider than the phone`);
      await shot(page, `phone-dark-app${tab.replace("/", "-")}`);
    }
  } finally {
    await phone.context.close();
  }
  // The sparklines draw the gateway's figures: traffic, a few scrapes, and the canvas is there.
  const light = await signedIn(herd.token);
  try {
    const drawn = light.page.locator("[data-testid=app-row-hello] .sparkline:not([data-empty]) canvas");
    for (let waited = 0; (await drawn.count()) < 3; waited += 3000) {
      assert.ok(waited < 60_000, "no sparkline drawn within 60 s of traffic");
      await traffic(30);
      await light.page.waitForTimeout(3000);
      await light.page.reload();
      await light.page.getByTestId("app-row-hello").waitFor();
      await light.page.waitForTimeout(500);
    }
    assert.match(await text(light.page.getByTestId("app-row-hello")), /req\/s/);
    await shot(light.page, "overview-traffic");
  } finally {
    await light.context.close();
  }
  const dark = await signedIn(herd.token, { dark: true });
  try {
    await dark.page.getByTestId("app-row-hello").waitFor();
    await shot(dark.page, "dark-overview");
    // The theme switch overrides the system's.
    await dark.page.getByLabel("Theme").selectOption("light");
    assert.equal(await dark.page.locator("html").getAttribute("data-theme"), "light");
  } finally {
    await dark.context.close();
  }
  // Keyboard only: tab to the token field, type, Enter; then tab to a link and follow it.
  const context = await browser!.newContext({ viewport: { width: 1280, height: 860 } });
  try {
    const page = await context.newPage();
    await page.goto(`${herd.url}/apps/hello/events`);
    // The token field has the focus once the page has rendered: no click needed.
    await page.waitForFunction("document.activeElement?.getAttribute('name') === 'token'");
    await page.keyboard.type(herd.token);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Events" }).waitFor();
    await page.getByRole("link", { name: "Logs" }).focus();
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/apps\/hello\/logs/);
  } finally {
    await context.close();
  }
});
