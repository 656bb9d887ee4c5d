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

test("etcd over TLS: herd backup, restore and migrate take --etcd-ca/--etcd-cert/--etcd-key", async () => {
  assert.ok(cluster.tls);
  const { main } = await import("../cli/main.ts");
  const { mkdtemp, rm } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = await mkdtemp(join(tmpdir(), "herd-etcd-tls-cli-"));
  const flags = [
    "--etcd-ca",
    cluster.tls.ca,
    "--etcd-cert",
    cluster.tls.clientCert,
    "--etcd-key",
    cluster.tls.clientKey,
  ];
  const source = `etcd://${cluster.endpoints[0].replace("https://", "")}/tls-cli-${process.pid}/`;
  const run = async (argv: string[]) => {
    let out = "";
    let err = "";
    const code = await main(argv, {
      stdout: {
        write: (s: string) => {
          out += s;
          return true;
        },
      },
      stderr: {
        write: (s: string) => {
          err += s;
          return true;
        },
      },
      env: {},
      cwd: dir,
      home: "/nonexistent",
      stdinIsTTY: false,
    });
    return { code, out, err };
  };
  const store = await openStore(source, dir, {
    ca: cluster.tls.ca,
    cert: cluster.tls.clientCert,
    key: cluster.tls.clientKey,
  });
  try {
    await store.put("tenant", "kept", { name: "kept" });
    const backup = await run([
      "backup",
      "--store",
      source,
      ...flags,
      "--data",
      join(dir, "data"),
      "--out",
      join(dir, "b"),
    ]);
    assert.equal(backup.code, 0, backup.err);
    assert.match(backup.out, /backed up 1 objects/);
    const target = `${source.replace(/\/$/, "")}-restored/`;
    const restore = await run([
      "restore",
      "--from",
      join(dir, "b"),
      "--store",
      target,
      ...flags,
      "--data",
      join(dir, "data2"),
    ]);
    assert.equal(restore.code, 0, restore.err);
    const migrate = await run([
      "migrate",
      "--from",
      target,
      "--to",
      `sqlite:${join(dir, "data3")}`,
      ...flags,
    ]);
    assert.equal(migrate.code, 0, migrate.err);
    assert.match(migrate.out, /migrated 1 objects/);
    // Without the flags the member refuses; the flags without an etcd store are refused naming them.
    const plain = await run([
      "backup",
      "--store",
      source,
      "--data",
      join(dir, "data"),
      "--out",
      join(dir, "c"),
    ]);
    assert.notEqual(plain.code, 0);
    const sqlite = await run(["backup", ...flags, "--data", join(dir, "data3"), "--out", join(dir, "d")]);
    assert.notEqual(sqlite.code, 0);
    assert.match(sqlite.err, /--etcd-ca, --etcd-cert and --etcd-key go with/);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
