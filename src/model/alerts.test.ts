import assert from "node:assert/strict";
import { test } from "node:test";
import type { HerdError } from "../common/errors.ts";
import { expandTemplate, matchesAll, parseMatcher } from "./alerts.ts";
import { parseManifest } from "./manifest.ts";

const base = "app: shop\nservices:\n  web:\n    command: node server.js\n";

function problem(text: string) {
  try {
    parseManifest(text);
  } catch (err) {
    const e = err as HerdError;
    return { message: e.message, field: e.details?.[0]?.field, line: e.details?.[0]?.line };
  }
  assert.fail("expected the manifest to be refused");
}

test("herd.yaml alerts: a valid section parses", () => {
  const m = parseManifest(
    `${base}alerts:\n  slow-checkout:\n    expr: histogram_quantile(0.99, sum by (le) (rate(herd_gateway_request_duration_seconds_bucket{app="shop"}[5m])))\n    op: ">"\n    threshold: 0.5\n    for: 10m\n    severity: critical\n    annotations:\n      summary: "p99 is {{ $value }}s"\n`,
  );
  assert.equal(m.alerts?.["slow-checkout"]?.threshold, 0.5);
});

test("herd.yaml alerts: errors name the field and its line", () => {
  let p = problem(`${base}alerts:\n  bad:\n    expr: sum(rate(x[5m])\n`);
  assert.equal(p.field, "alerts.bad.expr");
  assert.equal(p.line, 7);
  assert.match(p.message, /^herd\.yaml:7: alerts\.bad\.expr: parse error at position/);

  p = problem(`${base}alerts:\n  bad:\n    expr: x\n    for: soon\n`);
  assert.equal(p.field, "alerts.bad.for");
  assert.equal(p.line, 8);

  p = problem(`${base}alerts:\n  bad:\n    expr: x\n    severity: page\n`);
  assert.equal(p.field, "alerts.bad.severity");
  assert.equal(p.line, 8);

  p = problem(`${base}alerts:\n  bad:\n    expr: x\n    threshold: 3\n`);
  assert.equal(p.field, "alerts.bad.op");
  assert.match(p.message, /op and threshold go together/);

  p = problem(`${base}alerts:\n  Bad_Name:\n    expr: x\n`);
  assert.match(p.field ?? "", /^alerts/);
  assert.ok(p.line === 6 || p.line === 7, `line ${p.line}`);

  p = problem(`${base}alerts:\n  bad:\n    expr: x\n    exprs: y\n`);
  assert.match(p.field ?? "", /^alerts\.bad/);

  p = problem(`${base}alerts:\n  bad:\n    expr: x\n    labels:\n      alertname: other\n`);
  assert.equal(p.field, "alerts.bad.labels.alertname");
  assert.match(p.message, /is set by herd \(the rule's name\); use another label/);
});

test("matchers and templates", () => {
  assert.deepEqual(parseMatcher('app=~"shop|cart"'), { name: "app", op: "=~", value: "shop|cart" });
  assert.deepEqual(parseMatcher("severity!=info"), { name: "severity", op: "!=", value: "info" });
  assert.match(String(parseMatcher("nonsense")), /not a matcher/);
  const ms = [parseMatcher('app=~"shop|cart"'), parseMatcher("severity!=info")] as never[];
  assert.equal(matchesAll(ms, { app: "shop", severity: "critical" }), true);
  assert.equal(matchesAll(ms, { app: "shopping", severity: "critical" }), false, "anchored");
  assert.equal(matchesAll(ms, { app: "cart", severity: "info" }), false);
  assert.equal(
    expandTemplate("{{ $labels.app }} at {{$value}} {{ .Other }}", { app: "a" }, 0.123456),
    "a at 0.1235 {{ .Other }}",
  );
});
