// herd.yaml's release phase and jobs: validated with errors that name the
// field (a bad cron says what is wrong), folded into the service that runs them.

import assert from "node:assert/strict";
import { test } from "node:test";
import { cronProblem, foldAppJobs, lastFire, nextFire } from "./job.ts";
import { normalizeService, parseManifest } from "./manifest.ts";

const base = "services:\n  web:\n    command: node server.js\n";

function problem(yaml: string): { message: string; field?: string } {
  try {
    parseManifest(yaml);
  } catch (err) {
    const e = err as { message: string; details?: { field: string }[] };
    return { message: e.message, field: e.details?.[0]?.field };
  }
  assert.fail("expected a problem");
}

test("a bad cron expression names the field and what is wrong", () => {
  const p = problem(`jobs:\n  clean:\n    schedule: "*/5 * * * 8"\n    command: x\n${base}`);
  assert.equal(p.field, "jobs.clean.schedule");
  assert.match(
    p.message,
    /herd\.yaml:3: jobs\.clean\.schedule: the weekday field "8" is out of range \(0-7 or sun-sat\)/,
  );
  const q = problem(`jobs:\n  clean:\n    schedule: "* * *"\n    command: x\n${base}`);
  assert.match(q.message, /schedule: "\* \* \*" has 3 fields; a cron has 5: minute hour day month weekday/);
});

test("a cron's problem names the field as written", () => {
  assert.match(cronProblem("* * 32 * *") ?? "", /^the day field "32" is out of range \(1-31\)/);
  assert.match(cronProblem("x 4 3 * * *") ?? "", /^the second field "x" is not a number, \*, a range/);
  assert.match(cronProblem("0 0 0 * * * 2027") ?? "", /has 7 fields/);
  assert.match(cronProblem("@sometimes") ?? "", /^"@sometimes" is not one of @yearly/);
  assert.equal(cronProblem("@daily"), undefined);
  assert.equal(cronProblem(" */5 * * * * "), undefined);
  assert.equal(cronProblem("30 */5 * * * *"), undefined);
});

test("other job fields: concurrency, timeout, history, unknown keys, the service", () => {
  assert.equal(
    problem(`jobs:\n  c:\n    schedule: "* * * * *"\n    command: x\n    concurrency: sometimes\n${base}`)
      .field,
    "jobs.c.concurrency",
  );
  assert.equal(
    problem(`jobs:\n  c:\n    schedule: "* * * * *"\n    command: x\n    timeout: 3 days\n${base}`).field,
    "jobs.c.timeout",
  );
  assert.equal(
    problem(`jobs:\n  c:\n    schedule: "* * * * *"\n    command: x\n    history: 0\n${base}`).field,
    "jobs.c.history",
  );
  assert.equal(
    problem(`jobs:\n  c:\n    schedule: "* * * * *"\n    cmd: x\n${base}`).field,
    "jobs.c.command",
  );
  const svc = problem(`jobs:\n  c:\n    schedule: "* * * * *"\n    command: x\n    service: worker\n${base}`);
  assert.equal(svc.field, "jobs.c.service");
  assert.match(svc.message, /no service worker/);
  const twice = problem(
    `jobs:\n  c:\n    schedule: "* * * * *"\n    command: x\n${base}    jobs:\n      c:\n        schedule: "* * * * *"\n        command: y\n`,
  );
  assert.equal(twice.field, "services.web.jobs.c");
  assert.equal(problem(`release: {command: x, timeout: forever}\n${base}`).field, "release.timeout");
});

test("app-level release and jobs go to web (or the one service) with their defaults", () => {
  const m = parseManifest(
    `release: node migrate.js\njobs:\n  c:\n    schedule: "*/2 * * * * *"\n    command: echo hi\n${base}`,
  );
  const services = { web: normalizeService("a", "web", m.services.web, undefined) };
  const folded = foldAppJobs(m, services);
  assert.deepEqual(folded.web.release, { command: "node migrate.js", timeoutMs: 600_000 });
  assert.deepEqual(folded.web.jobs, {
    c: {
      schedule: "*/2 * * * * *",
      command: "echo hi",
      concurrency: "forbid",
      timeoutMs: 3600_000,
      history: 10,
    },
  });
  assert.equal(services.web.jobs, undefined, "the input is not changed");
  // Several services and no web: the app-level one must say which.
  const p = problem("release: x\nservices:\n  a:\n    command: x\n  b:\n    command: y\n");
  assert.equal(p.field, "release");
  assert.match(p.message, /name the service/);
});

test("schedule times: the next and the latest fire", () => {
  const t = Date.parse("2026-01-01T00:00:03Z");
  assert.equal(nextFire("*/2 * * * * *", t), Date.parse("2026-01-01T00:00:04Z"));
  assert.equal(lastFire("*/2 * * * * *", t - 10_000, t), Date.parse("2026-01-01T00:00:02Z"));
  assert.equal(lastFire("0 0 * * *", t - 1000, t), undefined, "midnight was before `since`");
  assert.equal(lastFire("0 0 * * *", t - 5000, t), Date.parse("2026-01-01T00:00:00Z"));
});
