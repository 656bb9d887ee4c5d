import assert from "node:assert/strict";
import { test } from "node:test";
import { HerdError } from "../common/errors.ts";
import { parseAutoscaleDuration, parseCpuShare } from "./autoscale.ts";
import { normalizeService, parseManifest } from "./manifest.ts";

const yaml = (autoscale: string, extra = "") => `app: shop
services:
  web:
    command: node server.js
${extra}    autoscale: ${autoscale}
`;

const spec = (autoscale: string, extra = "") => {
  const m = parseManifest(yaml(autoscale, extra));
  return normalizeService("shop", "web", m.services.web, undefined);
};

const problem = (autoscale: string) => {
  try {
    parseManifest(yaml(autoscale));
  } catch (err) {
    assert.ok(err instanceof HerdError);
    return err;
  }
  throw new Error("expected a HerdError");
};

test("autoscale: every default filled in; the target's value per metric", () => {
  const s = spec("{ max: 10, target: { rps: 50 } }");
  assert.deepEqual(s.autoscale, {
    min: 1,
    max: 10,
    target: { metric: "rps", value: 50 },
    scaleDownDelayMs: 300_000,
    maxStep: 1000,
    idleAfterMs: 300_000,
    stableWindowMs: 60_000,
    panicWindowMs: 6_000,
  });
  assert.deepEqual(spec("{ max: 3, target: { concurrency: 10 } }").autoscale?.target, {
    metric: "concurrency",
    value: 10,
  });
  assert.deepEqual(spec("{ max: 3, target: { cpu: 70% } }").autoscale?.target, { metric: "cpu", value: 0.7 });
  assert.deepEqual(spec("{ max: 3, target: { cpu: 35 } }").autoscale?.target, { metric: "cpu", value: 0.35 });
  assert.deepEqual(spec("{ max: 3, target: { p99: 300ms } }").autoscale?.target, {
    metric: "p99",
    value: 300,
  });
  assert.deepEqual(spec('{ max: 3, target: { query: "sum(queue_length)", value: 5 } }').autoscale?.target, {
    metric: "query",
    value: 5,
    query: "sum(queue_length)",
  });
  const short = spec(
    "{ min: 0, max: 4, target: { rps: 5 }, scaleDownDelay: 2s, maxStep: 2, idleAfter: 1.5s, stableWindow: 3, panicWindow: 1s }",
  ).autoscale;
  assert.equal(short?.scaleDownDelayMs, 2000);
  assert.equal(short?.idleAfterMs, 1500);
  assert.equal(short?.stableWindowMs, 3000);
  assert.equal(short?.panicWindowMs, 1000);
  assert.equal(short?.maxStep, 2);
  assert.equal(short?.min, 0);
});

test("autoscale: instances is the start count, clamped into [min, max]", () => {
  assert.equal(spec("{ min: 2, max: 4, target: { rps: 5 } }").instances, 2);
  assert.equal(spec("{ min: 2, max: 4, target: { rps: 5 } }", "    instances: 9\n").instances, 4);
  assert.equal(spec("{ min: 0, max: 4, target: { rps: 5 } }", "    instances: 3\n").instances, 3);
  assert.equal(spec("{ min: 0, max: 4, target: { rps: 5 } }").instances, 1);
});

test("autoscale: errors name the field", () => {
  const cases: [string, string, RegExp][] = [
    ["{ min: 5, max: 2, target: { rps: 5 } }", "services.web.autoscale.min", /must not be more than max/],
    ["{ max: 1001, target: { rps: 5 } }", "services.web.autoscale.max", /1000/],
    ["{ target: { rps: 5 } }", "services.web.autoscale.max", /./],
    ["{ max: 3, target: {} }", "services.web.autoscale.target", /needs one of/],
    ["{ max: 3, target: { rps: 5, cpu: 70% } }", "services.web.autoscale.target", /exactly one/],
    ["{ max: 3, target: { rps: 0 } }", "services.web.autoscale.target.rps", /./],
    ["{ max: 3, target: { cpu: 170% } }", "services.web.autoscale.target.cpu", /at most 100%/],
    ["{ max: 3, target: { p99: fast } }", "services.web.autoscale.target.p99", /duration/],
    ['{ max: 3, target: { query: "sum(" } }', "services.web.autoscale.target.value", /required with query/],
    [
      '{ max: 3, target: { query: "sum(", value: 2 } }',
      "services.web.autoscale.target.query",
      /does not parse/,
    ],
    ["{ max: 3, target: { rps: 5, value: 2 } }", "services.web.autoscale.target.value", /query only/],
    [
      "{ max: 3, target: { rps: 5 }, scaleDownDelay: soon }",
      "services.web.autoscale.scaleDownDelay",
      /duration/,
    ],
    ["{ max: 3, target: { rps: 5 }, stableWindow: 2h }", "services.web.autoscale.stableWindow", /1h/],
    [
      "{ max: 3, target: { rps: 5 }, panicWindow: 10s, stableWindow: 5s }",
      "services.web.autoscale.panicWindow",
      /panic window/,
    ],
    ["{ max: 3, target: { rps: 5 }, idleAfter: 0 }", "services.web.autoscale.idleAfter", /from 1s/],
    ["{ max: 3, target: { rps: 5 }, maxStep: 0 }", "services.web.autoscale.maxStep", /./],
    [
      "{ max: 3, target: { rps: 5 }, speed: 3 }",
      "services.web.autoscale.speed",
      /not a field here \(the fields here: min, max, target,/,
    ],
  ];
  for (const [text, field, message] of cases) {
    const err = problem(text);
    const detail = err.details?.find((d) => d.field === field);
    assert.ok(detail, `${text}: expected a problem at ${field}, got ${JSON.stringify(err.details)}`);
    assert.match(detail.message, message, text);
    assert.match(err.message, /^herd\.yaml:\d+: services\.web\.autoscale/, text);
  }
});

test("autoscale durations and CPU shares read as documented", () => {
  assert.equal(parseAutoscaleDuration("300ms"), 300);
  assert.equal(parseAutoscaleDuration("6s"), 6000);
  assert.equal(parseAutoscaleDuration("5m"), 300_000);
  assert.equal(parseAutoscaleDuration("1h"), 3_600_000);
  assert.equal(parseAutoscaleDuration(0.5), 500);
  assert.equal(parseAutoscaleDuration("5 minutes"), undefined);
  assert.equal(parseAutoscaleDuration(-1), undefined);
  assert.equal(parseCpuShare("70%"), 0.7);
  assert.equal(parseCpuShare(100), 1);
  assert.equal(parseCpuShare("0%"), undefined);
  assert.equal(parseCpuShare("lots"), undefined);
});
