import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type Pipeline,
  parsePreviewTtl,
  parseStage,
  previewAppName,
  promotionStages,
  retargetServices,
  validateStages,
} from "./pipeline.ts";
import type { ServiceSpec } from "./service-spec.ts";

const pipeline: Pipeline = {
  tenant: "t",
  name: "shop",
  createdAt: "2026-01-01T00:00:00Z",
  stages: [
    { name: "dev", app: "shop-dev" },
    { name: "staging", app: "shop-staging" },
    { name: "production", app: "shop" },
  ],
};

test("stages: 2 to 10, each name and app once, every problem names its field", () => {
  assert.deepEqual(validateStages(pipeline.stages), []);
  assert.deepEqual(validateStages([{ name: "a", app: "x" }]), [
    { field: "stages", message: "must have 2 to 10 stages; got 1" },
  ]);
  const dup = validateStages([
    { name: "a", app: "x" },
    { name: "a", app: "x" },
    { name: "B", app: "y" },
  ]);
  assert.deepEqual(
    dup.map((p) => p.field),
    ["stages.1.name", "stages.1.app", "stages.2.name"],
  );
  assert.match(dup[0]!.message, /named twice/);
  assert.match(dup[1]!.message, /app x is in two stages/);
});

test("a stage flag is NAME=APP", () => {
  assert.deepEqual(parseStage("staging=shop-staging"), { name: "staging", app: "shop-staging" });
  assert.match(parseStage("staging") as string, /NAME=APP/);
});

test("promotion goes forward only, skipping stages allowed; a missing stage names from or to", () => {
  const ok = promotionStages(pipeline, "staging", "production");
  assert.ok(!("field" in ok));
  assert.equal(ok.to.app, "shop");
  assert.ok(!("field" in promotionStages(pipeline, "dev", "production")));
  const back = promotionStages(pipeline, "production", "staging");
  assert.ok("field" in back && back.field === "to");
  assert.match(
    (back as { message: string }).message,
    /dev → staging → production.*staging does not come after production/,
  );
  const same = promotionStages(pipeline, "staging", "staging");
  assert.ok("field" in same && same.field === "to");
  const none = promotionStages(pipeline, "qa", "production");
  assert.ok("field" in none && none.field === "from");
});

const spec = (over: Partial<ServiceSpec>): ServiceSpec =>
  ({
    command: "node server.js",
    instances: 1,
    resources: { cpu: 0.1, memory: 1 },
    health: { kind: "tcp", intervalMs: 1000, timeoutMs: 1000, failures: 3, startupMs: 10_000 },
    mode: "cattle",
    env: {},
    routes: [],
    ...over,
  }) as ServiceSpec;

test("retargeting: the source's code and routes, the target's env values, size and real-domain routes", () => {
  const source = {
    web: spec({
      command: "node v2.js",
      instances: 1,
      env: { COLOR: "blue", NEW_FLAG: "1", DB: "staging-db" },
      secrets: { TOKEN: "api-token" },
      routes: [
        { host: "shop-staging.localhost", path: "/" },
        { host: "api.shop-staging.localhost", path: "/v2" },
        { host: "staging.shop.example.com", path: "/" },
      ],
    }),
    worker: spec({ instances: 2, env: { Q: "s" } }),
  };
  const target = {
    web: spec({
      instances: 4,
      env: { DB: "prod-db" },
      routes: [
        { host: "shop.localhost", path: "/old" },
        { host: "shop.example.com", path: "/" },
      ],
    }),
  };
  const out = retargetServices(source, "shop-staging", target, "shop");
  assert.equal(out.web!.command, "node v2.js");
  assert.deepEqual(out.web!.env, { COLOR: "blue", NEW_FLAG: "1", DB: "prod-db" });
  assert.deepEqual(out.web!.secrets, { TOKEN: "api-token" });
  assert.equal(out.web!.instances, 4);
  assert.deepEqual(out.web!.routes, [
    { host: "shop.localhost", path: "/" },
    { host: "api.shop.localhost", path: "/v2" },
    { host: "shop.example.com", path: "/" },
  ]);
  // A service new to the target comes as the source has it.
  assert.equal(out.worker!.instances, 2);
  assert.deepEqual(out.worker!.env, { Q: "s" });
  // A first promotion (the target serves nothing yet).
  const first = retargetServices(source, "shop-staging", undefined, "shop");
  assert.deepEqual(
    first.web!.routes.map((r) => r.host),
    ["shop.localhost", "api.shop.localhost"],
  );
  // The source's specs are not changed.
  assert.equal(source.web.routes[0]!.host, "shop-staging.localhost");
});

test("a host only ending in the source's name is not the source's own", () => {
  const out = retargetServices(
    { web: spec({ routes: [{ host: "xshop.localhost", path: "/" }] }) },
    "shop",
    undefined,
    "prod",
  );
  assert.deepEqual(out.web!.routes, []);
});

test("preview app names and TTLs", () => {
  assert.equal(previewAppName("shop", "pr-12"), "shop-pr-12");
  assert.deepEqual(previewAppName("shop", "PR"), {
    field: "name",
    message: "must match ^[a-z][a-z0-9-]{0,39}$",
  });
  const long = previewAppName("a".repeat(30), "b".repeat(10));
  assert.ok(typeof long !== "string" && /longer than 40/.test(long.message));
  assert.equal(parsePreviewTtl("24h"), 86_400_000);
  assert.equal(parsePreviewTtl("3s"), 3000);
  assert.equal(parsePreviewTtl("500ms"), undefined);
  assert.equal(parsePreviewTtl("31d"), undefined);
  assert.equal(parsePreviewTtl("800h"), undefined);
});
