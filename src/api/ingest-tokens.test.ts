import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { Token } from "../model/identity.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { hashToken } from "./auth.ts";
import { IngestTokens } from "./ingest-tokens.ts";

test("one ingest token per tenant: made once, kept in a 0600 file, replaced when revoked", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-ingest-tokens-"));
  const store = new MemoryStore();
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const tokens = new IngestTokens(dir, store);
  const both = await tokens.forTenants(["b", "a", "a", "../etc"]);
  assert.deepEqual(
    Object.keys(both),
    ["a", "b"],
    "one per tenant; a name that is no tenant name is left out",
  );
  assert.notEqual(both.a, both.b);
  const stored = (await store.get<Token>("token", hashToken(both.a as string)))?.value;
  assert.deepEqual([stored?.kind, stored?.tenant], ["ingest", "a"]);
  assert.equal(statSync(join(dir, "ingest-tokens")).mode & 0o777, 0o700);
  assert.equal(statSync(join(dir, "ingest-tokens", "a")).mode & 0o777, 0o600);
  // Asked at once from several heartbeats: still one token.
  const again = await Promise.all([tokens.forTenant("c"), tokens.forTenant("c")]);
  assert.equal(again[0], again[1]);
  assert.equal((await store.list<Token>("token")).items.length, 3);
  // After a restart the file gives the same secret.
  assert.equal(await new IngestTokens(dir, store).forTenant("a"), both.a);
  // Revoked: the next look-up (a restart, or 10 s later) makes a new one.
  const key = hashToken(both.a as string);
  const o = await store.get<Token>("token", key);
  await store.put("token", key, { ...(o?.value as Token), revokedAt: new Date().toISOString() });
  const fresh = await new IngestTokens(dir, store).forTenant("a");
  assert.notEqual(fresh, both.a);
  assert.equal(await new IngestTokens(dir, store).forTenant("a"), fresh);
});
