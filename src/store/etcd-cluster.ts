/**
 * A throwaway etcd cluster on loopback, for tests and benches: N members of
 * the distribution's `etcd` (installed by common/debian-packages.ts, its
 * service never started), free ports, one temp data dir. `stop()` kills every
 * member and removes the dir; a failed start does the same before it throws.
 *
 * `isolate: i` starts member i in its own network namespace joined by a veth
 * pair (netns.ts); the other members then listen on the pair's host address
 * instead of loopback, so that all reach each other. `isolated.cut()` takes
 * the link down: the member is cut off the network, as by a partition.
 * `stop()` removes the namespace too. `tls: true` serves clients over TLS
 * and requires a client certificate (etcd-test-tls.ts makes them).
 */

import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { get as httpGet } from "node:http";
import { get as httpsGet } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebianPackages } from "../common/debian-packages.ts";
import { freePort } from "../common/free-port.ts";
import { makeTestTls, type TestTlsFiles } from "./etcd-test-tls.ts";
import { createNamespace, type NetNamespace } from "./netns.ts";

export interface EtcdCluster {
  /** Client URLs, one per member. */
  endpoints: string[];
  /** Peer URLs, one per member. */
  peers: string[];
  /** The members' processes, in order (for chaos tests). */
  members: ChildProcess[];
  /** With `tls`: the CA and the client certificate to reach the members with (https endpoints). */
  tls?: TestTlsFiles;
  /** With `isolate`: the member in its own network namespace, and its link. */
  isolated?: { member: number; cut(): void; heal(): void };
  stop(): Promise<void>;
}

/**
 * Starts `size` members (default 3) and waits until the cluster answers on
 * every member. `clientPorts`: member i listens for clients on the i-th.
 */
export async function startEtcdCluster(
  size = 3,
  options: { isolate?: number; tls?: boolean; clientPorts?: number[] } = {},
): Promise<EtcdCluster> {
  const { etcd } = await ensureDebianPackages({ etcd: "etcd-server" });
  const dir = await mkdtemp(join(tmpdir(), "herd-etcd-"));
  const members: ChildProcess[] = [];
  const logs: string[][] = [];
  let netns: NetNamespace | undefined;
  const stop = async () => {
    await Promise.all(
      members.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once("exit", () => resolve());
            child.kill("SIGKILL");
          }),
      ),
    );
    netns?.remove();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    if (options.isolate !== undefined) netns = await createNamespace();
    if (options.isolate !== undefined && options.tls) throw new Error("isolate and tls: one or the other");
    // Clients must verify and show certificates; peers stay plain on loopback.
    const tls = options.tls ? await makeTestTls(dir) : undefined;
    const host = (i: number) =>
      netns === undefined ? "127.0.0.1" : i === options.isolate ? netns.innerIp : netns.hostIp;
    const ports = await Promise.all(Array.from({ length: size * 2 }, freePort));
    // A client port asked for (a test starting a cluster on a port another left): a member's own.
    for (const [i, port] of (options.clientPorts ?? []).entries()) ports[2 * i] = port;
    const names = Array.from({ length: size }, (_, i) => `m${i}`);
    const peer = (i: number) => `http://${host(i)}:${ports[2 * i + 1]}`;
    // With TLS the name is localhost: Node takes no IP address as a TLS server name.
    const client = (i: number) =>
      tls ? `https://localhost:${ports[2 * i]}` : `http://${host(i)}:${ports[2 * i]}`;
    const listen = (i: number) => (tls ? `https://127.0.0.1:${ports[2 * i]}` : client(i));
    const initial = names.map((name, i) => `${name}=${peer(i)}`).join(",");
    for (let i = 0; i < size; i++) {
      const args = [
        `--name=${names[i]}`,
        `--data-dir=${join(dir, names[i])}`,
        `--listen-client-urls=${listen(i)}`,
        `--advertise-client-urls=${client(i)}`,
        `--listen-peer-urls=${peer(i)}`,
        `--initial-advertise-peer-urls=${peer(i)}`,
        `--initial-cluster=${initial}`,
        "--initial-cluster-state=new",
        `--initial-cluster-token=${dir}`,
        "--heartbeat-interval=50",
        "--election-timeout=500",
        "--log-level=warn",
        "--logger=zap",
        ...(tls
          ? [
              `--cert-file=${tls.serverCert}`,
              `--key-file=${tls.serverKey}`,
              `--trusted-ca-file=${tls.ca}`,
              "--client-cert-auth",
            ]
          : []),
      ];
      const [cmd, argv] = netns && i === options.isolate ? netns.exec(etcd, args) : [etcd, args];
      const child = spawn(cmd, argv, { stdio: ["ignore", "ignore", "pipe"] });
      const log: string[] = [];
      logs.push(log);
      child.stderr?.on("data", (chunk: Buffer) => {
        log.push(chunk.toString());
        if (log.length > 50) log.shift();
      });
      members.push(child);
    }
    const endpoints = names.map((_, i) => client(i));
    await waitHealthy(endpoints, members, logs, tls);
    const isolated =
      netns && options.isolate !== undefined
        ? { member: options.isolate, cut: netns.cut, heal: netns.heal }
        : undefined;
    const peers = names.map((_, i) => peer(i));
    return { endpoints, peers, members, ...(isolated ? { isolated } : {}), ...(tls ? { tls } : {}), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Waits until every member says it is healthy (it has a leader and answers), at most 20 s. */
async function waitHealthy(
  endpoints: string[],
  members: ChildProcess[],
  logs: string[][],
  tls: TestTlsFiles | undefined,
): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (let i = 0; i < endpoints.length; i++) {
    for (;;) {
      const exited = members.findIndex((m) => m.exitCode !== null);
      if (exited >= 0) throw new Error(`etcd member ${exited} exited: ${logs[exited].join("").slice(-2000)}`);
      try {
        const body = JSON.parse(await getText(`${endpoints[i]}/health`, tls)) as { health?: string };
        if (body.health === "true") break;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) {
        throw new Error(`etcd member ${i} not healthy within 20 s: ${logs[i].join("").slice(-2000)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** GET a member's URL (https with the test client certificate when `tls`); at most 1 s. */
function getText(url: string, tls: TestTlsFiles | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const options = {
      timeout: 1000,
      ...(tls
        ? { ca: readFileSync(tls.ca), cert: readFileSync(tls.clientCert), key: readFileSync(tls.clientKey) }
        : {}),
    };
    const req = (url.startsWith("https:") ? httpsGet : httpGet)(url, options, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => resolve(text));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
  });
}
