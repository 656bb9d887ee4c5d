import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { isCode } from "../common/errors.ts";
import { type EtcdCluster, startEtcdCluster } from "./etcd-cluster.ts";
import { EtcdStore } from "./etcd-store.ts";
import { openStore } from "./open.ts";

let cluster: EtcdCluster;
before(async () => {
  cluster = await startEtcdCluster(1, { tls: true });
});
after(async () => {
  await cluster?.stop();
});

const spec = () => `etcd://${cluster.endpoints[0].replace("https://", "")}/tls-${process.pid}/`;

test("etcd over TLS: a server with the CA and a client certificate writes, reads and watches", async () => {
  assert.ok(cluster.tls);
  assert.match(cluster.endpoints[0], /^https:/);
  const store = await openStore(spec(), "/nonexistent", {
    ca: cluster.tls.ca,
    cert: cluster.tls.clientCert,
    key: cluster.tls.clientKey,
  });
  try {
    const put = await store.put("tenant", "t1", { name: "t1" });
    const stop = new AbortController();
    const events = store.watch({ kinds: ["tenant"], fromRevision: put.revision - 1, signal: stop.signal });
    const first = await events[Symbol.asyncIterator]().next();
    stop.abort();
    assert.equal(first.value?.key, "t1");
    assert.deepEqual((await store.get("tenant", "t1"))?.value, { name: "t1" });
  } finally {
    await store.close();
  }
});

test("etcd over TLS: no client certificate, or plain text, is refused", async () => {
  assert.ok(cluster.tls);
  const endpoints = [cluster.endpoints[0].replace("https://", "http://")];
  await assert.rejects(
    EtcdStore.open({ endpoints, timeoutMs: 1000, tls: { ca: readFileSync(cluster.tls.ca) } }),
    (err) => isCode(err, "unavailable"),
  );
  await assert.rejects(EtcdStore.open({ endpoints, timeoutMs: 1000 }), (err) => isCode(err, "unavailable"));
});

test("etcd TLS: a cert without its key, a missing file, an IP address, or TLS with SQLite are refused naming the flag", async () => {
  assert.ok(cluster.tls);
  await assert.rejects(
    openStore(spec(), "/nonexistent", { ca: cluster.tls.ca, cert: cluster.tls.clientCert }),
    (err) => isCode(err, "invalid") && /--etcd-cert and --etcd-key/.test((err as Error).message),
  );
  await assert.rejects(
    openStore(spec(), "/nonexistent", { ca: "/nonexistent/ca.pem" }),
    (err) => isCode(err, "invalid") && /--etcd-ca \/nonexistent\/ca.pem/.test((err as Error).message),
  );
  await assert.rejects(
    openStore(undefined, "/nonexistent", { ca: cluster.tls.ca }),
    (err) => isCode(err, "invalid") && /--store etcd/.test((err as Error).message),
  );
});
