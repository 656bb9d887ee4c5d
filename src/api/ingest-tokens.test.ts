import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { Token } from "../model/identity.ts";
import { SecretStore } from "../secrets/secret-store.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { hashToken } from "./auth.ts";
import { INGEST_SCOPE, IngestTokens } from "./ingest-tokens.ts";

test("one ingest token per tenant: made once, kept encrypted in the secret store, replaced when revoked", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-ingest-tokens-"));
  const store = new MemoryStore();
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const secrets = await SecretStore.open(store, dir);
  const tokens = new IngestTokens(store, secrets);
  const both = await tokens.forTenants(["b", "a", "a", "../etc"]);
  assert.deepEqual(
    Object.keys(both),
    ["a", "b"],
    "one per tenant; a name that is no tenant name is left out",
  );
  assert.notEqual(both.a, both.b);
  const stored = (await store.get<Token>("token", hashToken(both.a as string)))?.value;
  assert.deepEqual([stored?.kind, stored?.tenant], ["ingest", "a"]);
  assert.deepEqual(
    (await secrets.list("a", INGEST_SCOPE)).map((s) => s.name),
    ["token"],
    "the secret is in the secret store",
  );
  const sealed = JSON.stringify((await store.list("secret")).items);
  assert.ok(!sealed.includes(both.a as string), "encrypted, not in plain text");
  // Asked at once from several heartbeats: still one token.
  const again = await Promise.all([tokens.forTenant("c"), tokens.forTenant("c")]);
  assert.equal(again[0], again[1]);
  assert.equal((await store.list<Token>("token")).items.length, 3);
  // After a restart the secret store gives the same secret.
  assert.equal(await new IngestTokens(store, secrets).forTenant("a"), both.a);
  // Revoked: the next look-up (a restart, or 10 s later) makes a new one.
  const key = hashToken(both.a as string);
  const o = await store.get<Token>("token", key);
  await store.put("token", key, { ...(o?.value as Token), revokedAt: new Date().toISOString() });
  const fresh = await new IngestTokens(store, secrets).forTenant("a");
  assert.notEqual(fresh, both.a);
  assert.equal(await new IngestTokens(store, secrets).forTenant("a"), fresh);
});
