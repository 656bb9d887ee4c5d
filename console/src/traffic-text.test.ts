import assert from "node:assert/strict";
import { test } from "node:test";
import { POLICY_TEXT, routePolicies } from "./traffic-text.ts";

test("a route's policies, one phrase each; a plain route has none", () => {
  assert.deepEqual(routePolicies({ host: "a.localhost", path: "/" }), []);
  assert.deepEqual(
    routePolicies({
      methods: ["GET", "HEAD"],
      match: "exact",
      rewrite: "/",
      rateLimit: { rate: 5, burst: 10, per: "ip" },
      balance: { kind: "hash", on: "cookie", name: "sid" },
      timeouts: { connectMs: 500, requestMs: 30_000 },
      auth: { apiKey: { header: "x-api-key", hideCredentials: true } },
      split: { to: [{ service: "v2", weight: 10 }] },
      mirror: { service: "shadow", percent: 5 },
      fallback: { status: 503, body: "later", contentType: "text/plain" },
    }),
    [
      "GET HEAD",
      "exact path",
      "rewrite → /",
      "rate 5/s, burst 10, per ip",
      "sticky by cookie sid",
      "connect timeout 500 ms",
      "request timeout 30000 ms",
      "API key",
      "split v2 10%",
      "mirror 5% → shadow",
      "fallback 503",
    ],
  );
  assert.deepEqual(routePolicies({ balance: { kind: "round_robin" } }), []);
  assert.deepEqual(routePolicies({ balance: { kind: "least_request" } }), ["least request"]);
});

test("a service's policies in words, off and default included", () => {
  assert.equal(POLICY_TEXT.breaker(undefined), "off");
  assert.equal(POLICY_TEXT.breaker({ failures: 5, openMs: 10_000 }), "opens after 5 failures, for 10000 ms");
  assert.equal(
    POLICY_TEXT.outlier({ failures: 3, ejectionMs: 30_000, maxShare: 0.5 }),
    "ejects after 3 failures for 30000 ms, at most 50% of instances",
  );
  assert.equal(POLICY_TEXT.criticality(undefined), "normal");
  assert.equal(POLICY_TEXT.concurrency(undefined), "no limit");
  assert.equal(POLICY_TEXT.concurrency(100), "at most 100 in flight");
});
