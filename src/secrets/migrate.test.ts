import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { Receiver } from "../model/alerts.ts";
import type { Consumer } from "../model/objects.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { migratePlainSecrets } from "./migrate.ts";
import { receiverHeaderValues } from "./receiver-headers.ts";
import { SecretStore } from "./secret-store.ts";

test("plain-text receiver headers and HS256 secrets from before move into the secret store, once", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-migrate-"));
  const store = new MemoryStore();
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const secrets = await SecretStore.open(store, dir);
  await store.put("alert_receiver", "t1/ops", {
    tenant: "t1",
    name: "ops",
    url: "http://127.0.0.1:1/hook",
    headers: { Authorization: "Bearer old-plain" },
    createdAt: "",
    updatedAt: "",
  });
  await store.put("consumer", "t1/app", {
    tenant: "t1",
    name: "app",
    createdAt: "",
    keys: [],
    jwt: [
      { id: "c1", key: "iss1", algorithm: "HS256", secret: "plain-hs256-secret", createdAt: "" },
      { id: "c2", key: "iss2", algorithm: "RS256", publicKey: "PEM", createdAt: "" },
    ],
  });

  assert.equal(await migratePlainSecrets(store, secrets), 2);
  const receiver = (await store.get<Receiver>("alert_receiver", "t1/ops"))!.value;
  assert.deepEqual(receiver.headers, { Authorization: { secret: "authorization", version: 1 } });
  assert.deepEqual(await receiverHeaderValues(store, secrets, "t1/ops"), {
    Authorization: "Bearer old-plain",
  });
  const consumer = (await store.get<Consumer>("consumer", "t1/app"))!.value;
  assert.equal(consumer.jwt[0]?.secret, undefined);
  assert.deepEqual(consumer.jwt[0]?.secretRef, { secret: "c1", version: 1 });
  assert.equal(consumer.jwt[1]?.publicKey, "PEM");
  assert.equal(await secrets.value("t1", "_consumer.app", "c1"), "plain-hs256-secret");
  const all = JSON.stringify([
    (await store.list("alert_receiver")).items,
    (await store.list("consumer")).items,
  ]);
  assert.ok(!all.includes("old-plain") && !all.includes("plain-hs256"));
  assert.equal(await migratePlainSecrets(store, secrets), 0, "nothing left to move");
});
