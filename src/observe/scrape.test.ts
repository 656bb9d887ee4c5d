import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { UrlGuard } from "../common/url-guard.ts";
import { Scraper, type ScrapeTarget } from "./scrape.ts";
import { Tsdb } from "./tsdb/tsdb.ts";

test("a scrape stores samples with job/instance and up; a bad body or a broken storage is up=0 with the reason", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-scrape-"));
  let body = '# TYPE jobs_total counter\njobs_total{queue="a"} 3\n';
  const server = createServer((_req, res) => res.end(body));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const db = new Tsdb({ dir });
  t.after(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });
  const port = (server.address() as AddressInfo).port;
  const target: ScrapeTarget = {
    name: "jobs",
    url: `http://127.0.0.1:${port}/metrics`,
    labels: { team: "x" },
    createdAt: "",
  };
  const errors: string[] = [];
  const scraper = new Scraper({
    tsdb: db,
    targets: async () => [target],
    // The test's target listens on 127.0.0.1.
    guard: new UrlGuard({ allow: ["127.0.0.0/8"] }),
    onError: (_t, err, kind) => errors.push(`${kind}: ${err.message}`),
  });

  const ok = await scraper.scrape(target);
  assert.equal(ok.health, "up");
  assert.equal(ok.samples, 1);
  const [s] = db.select([{ name: "__name__", op: "=", value: "jobs_total" }]);
  assert.deepEqual(s?.labels, {
    __name__: "jobs_total",
    instance: `127.0.0.1:${port}`,
    job: "jobs",
    queue: "a",
    team: "x",
  });

  body = "jobs_total{queue=a} 4\n";
  await new Promise((r) => setTimeout(r, 2));
  const bad = await scraper.scrape(target);
  assert.equal(bad.health, "down");
  assert.match(bad.lastError ?? "", /line 1: label queue: value must be in double quotes/);
  const up = db.select([{ name: "__name__", op: "=", value: "up" }])[0]?.id as number;
  assert.deepEqual(db.read(up, 0, Date.now() + 1000).values, [1, 0]);

  db.close();
  const broken = await scraper.scrape(target);
  assert.equal(broken.health, "down");
  assert.match(broken.lastError ?? "", /storing the samples failed/);
  assert.ok(
    errors.some((e) => e.startsWith("store: storing the samples failed")),
    errors.join("\n"),
  );
});

test("a registered target on loopback is refused unless allowed; one herd found itself is scraped", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-scrape-"));
  let asked = 0;
  const server = createServer((_req, res) => {
    asked++;
    res.end("up_total 1\n");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const db = new Tsdb({ dir });
  t.after(async () => {
    db.close();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
  const target: ScrapeTarget = { name: "mine", url, labels: {}, createdAt: "" };
  const scraper = new Scraper({ tsdb: db, targets: async () => [] });
  const refused = await scraper.scrape(target);
  assert.equal(refused.health, "down");
  assert.match(refused.lastError ?? "", /127\.0\.0\.1 is a loopback address.*--allow-fetch/);
  assert.equal(asked, 0, "the target was never asked");
  // Gateways' and agents' own metrics URLs (found from their reports) are trusted.
  assert.equal((await scraper.scrape({ ...target, trusted: true })).health, "up");
  assert.equal(asked, 1);
  // Allowed, a registered one is scraped too.
  const allowing = new Scraper({
    tsdb: db,
    targets: async () => [],
    guard: new UrlGuard({ allow: ["127.0.0.1"] }),
  });
  assert.equal((await allowing.scrape(target)).health, "up");
});
