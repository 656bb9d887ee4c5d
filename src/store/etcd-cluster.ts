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
 * `stop()` removes the namespace too.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebianPackages } from "../common/debian-packages.ts";
import { createNamespace, type NetNamespace } from "./netns.ts";

export interface EtcdCluster {
  /** Client URLs, one per member. */
  endpoints: string[];
  /** The members' processes, in order (for chaos tests). */
  members: ChildProcess[];
  /** With `isolate`: the member in its own network namespace, and its link. */
  isolated?: { member: number; cut(): void; heal(): void };
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (bound to 0, then released). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** Starts `size` members (default 3) and waits until the cluster answers on every member. */
export async function startEtcdCluster(size = 3, options: { isolate?: number } = {}): Promise<EtcdCluster> {
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
    const host = (i: number) =>
      netns === undefined ? "127.0.0.1" : i === options.isolate ? netns.innerIp : netns.hostIp;
    const ports = await Promise.all(Array.from({ length: size * 2 }, freePort));
    const names = Array.from({ length: size }, (_, i) => `m${i}`);
    const peer = (i: number) => `http://${host(i)}:${ports[2 * i + 1]}`;
    const client = (i: number) => `http://${host(i)}:${ports[2 * i]}`;
    const initial = names.map((name, i) => `${name}=${peer(i)}`).join(",");
    for (let i = 0; i < size; i++) {
      const args = [
        `--name=${names[i]}`,
        `--data-dir=${join(dir, names[i])}`,
        `--listen-client-urls=${client(i)}`,
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
    await waitHealthy(endpoints, members, logs);
    const isolated =
      netns && options.isolate !== undefined
        ? { member: options.isolate, cut: netns.cut, heal: netns.heal }
        : undefined;
    return { endpoints, members, ...(isolated ? { isolated } : {}), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Waits until every member says it is healthy (it has a leader and answers), at most 20 s. */
async function waitHealthy(endpoints: string[], members: ChildProcess[], logs: string[][]): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (let i = 0; i < endpoints.length; i++) {
    for (;;) {
      const exited = members.findIndex((m) => m.exitCode !== null);
      if (exited >= 0) throw new Error(`etcd member ${exited} exited: ${logs[exited].join("").slice(-2000)}`);
      try {
        const res = await fetch(`${endpoints[i]}/health`, { signal: AbortSignal.timeout(1000) });
        const body = (await res.json()) as { health?: string };
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
