import assert from "node:assert/strict";
import { test } from "node:test";
import type { ServiceSpec } from "../model/service-spec.ts";
import { withAddonSecrets } from "./bindings.ts";

const spec = (over: Partial<ServiceSpec> = {}) => ({ env: {}, ...over }) as ServiceSpec;

test("bound variables become secret env; herd.yaml's own win; a detached one goes", () => {
  const one = withAddonSecrets({ web: spec({ env: { REDIS_URL: "x" }, secrets: { KEY: "key" } }) }, [
    "DATABASE_URL",
    "REDIS_URL",
  ]);
  assert.deepEqual(one.web?.secrets, { KEY: "key", DATABASE_URL: "DATABASE_URL" });
  assert.deepEqual(one.web?.addonSecrets, ["DATABASE_URL"]);
  const two = withAddonSecrets(one, []);
  assert.deepEqual(two.web?.secrets, { KEY: "key" });
  assert.equal(two.web?.addonSecrets, undefined);
  const none = withAddonSecrets({ w: spec() }, []);
  assert.equal(none.w?.secrets, undefined);
});

test("a variable herd.yaml declares as a secret itself is not taken over", () => {
  const s = withAddonSecrets({ web: spec({ secrets: { DATABASE_URL: "my-db" } }) }, ["DATABASE_URL"]);
  assert.deepEqual(s.web?.secrets, { DATABASE_URL: "my-db" });
  assert.equal(s.web?.addonSecrets, undefined);
});
