// The console's browser tests' shared steps: Debian's chromium (installed by
// scripts/ensure-tools.ts when missing) driven by playwright-core, a signed-in
// page in a context of its own, screenshots to test/e2e/screenshots/
// (git-ignored), and waiting until a page has loaded everything it shows.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { ensureDebianPackages } from "../../scripts/ensure-tools.ts";
import type { Herd } from "./harness.ts";

const SHOTS = join(import.meta.dirname, "screenshots");

export async function launchBrowser(): Promise<Browser> {
  const { chromium: bin } = await ensureDebianPackages({ chromium: "chromium" });
  mkdirSync(SHOTS, { recursive: true });
  // Root cannot run chromium's sandbox; the pages are herd's own.
  return chromium.launch({ executablePath: bin, args: ["--no-sandbox"] });
}

export interface SignedIn {
  page: Page;
  context: BrowserContext;
  /** Uncaught errors of the page's scripts, as they happen. */
  errors: string[];
}

/** A page signed in with `token` at the console on `url`, in a new context (its own storage) of the given size and colour scheme. */
export async function signIn(
  browser: Browser,
  url: string,
  token: string,
  options: { width?: number; height?: number; dark?: boolean } = {},
): Promise<SignedIn> {
  const context = await browser.newContext({
    viewport: { width: options.width ?? 1280, height: options.height ?? 860 },
    colorScheme: options.dark ? "dark" : "light",
  });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${url}/`);
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("whoami").waitFor();
  return { page, context, errors };
}

export async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Until nothing on the page says it is loading (the Loading boxes carry aria-busy). */
export async function settled(page: Page, errors: string[] = []): Promise<void> {
  const h1 = page.locator("main h1");
  const busy = page.locator("main [aria-busy=true]");
  // Polled: the console's Content-Security-Policy refuses waitForFunction's eval.
  for (const started = Date.now(); (await h1.count()) === 0 || (await busy.count()) > 0; ) {
    if (Date.now() - started > 20_000) {
      const body = ((await page.locator("body").textContent()) ?? "").slice(0, 400);
      throw new Error(`${page.url()} still loading after 20 s: ${body} ${errors.join("; ")}`);
    }
    await page.waitForTimeout(10);
  }
}

/** Makes user vera a viewer of the default tenant and gives her a token: the console's "may not" side. */
export async function viewer(herd: Pick<Herd, "api">): Promise<{ token: string; id: string }> {
  const ok = (r: { status: number; body: unknown }) => {
    assert.ok(r.status < 300, JSON.stringify(r.body));
    return r.body as Record<string, string>;
  };
  ok(await herd.api("POST", "/users", { name: "vera" }));
  ok(await herd.api("PUT", "/tenants/default/members/vera", { role: "viewer" }));
  const { token, id } = ok(await herd.api("POST", "/tokens", { name: "console test", user: "vera" }));
  return { token, id };
}
