// The console's load fixture: 50 apps and 500 instances written straight into
// a stopped control plane's store (console-pages.test.ts times the pages on it).

import { join } from "node:path";
import type { App, Instance, Node, Release, Service } from "../../src/model/objects.ts";
import { releaseKey } from "../../src/model/objects.ts";
import { SqliteStore } from "../../src/store/sqlite-store.ts";

/**
 * 50 apps of one service with 10 instances each, on five more nodes: copies
 * of hello's objects under other names, written straight to the stopped
 * server's store. The nodes' last heartbeat is far ahead, so the node
 * controller leaves them ready and nothing is rescheduled; no process runs.
 */
export async function seed(dataDir: string, tenant: string): Promise<void> {
  const store = SqliteStore.open(join(dataDir, "state.db"));
  try {
    const app = (await store.get<App>("app", "default/hello"))!.value;
    const service = (await store.list<Service>("service", { prefix: "default/hello/" })).items[0].value;
    const release = (await store.get<Release>("release", releaseKey("default", "hello", app.release ?? 1)))!
      .value;
    const instance = (await store.list<Instance>("instance")).items.find(
      (o) => o.value.app === "hello",
    )!.value;
    const node = (await store.list<Node>("node")).items[0].value;
    await store.put("tenant", tenant, { name: tenant, createdAt: new Date().toISOString() });
    const nodes = Array.from({ length: 5 }, (_, i) => `ghost-${i + 1}`);
    for (const name of nodes)
      await store.put("node", name, {
        ...node,
        name,
        lastHeartbeat: "2100-01-01T00:00:00.000Z",
        metricsUrl: undefined,
      });
    for (let a = 0; a < 50; a++) {
      const name = `load-${String(a).padStart(2, "0")}`;
      await store.put("app", `${tenant}/${name}`, { ...app, tenant, name });
      await store.put("release", releaseKey(tenant, name, release.version), {
        ...release,
        tenant,
        app: name,
      });
      await store.put("service", `${tenant}/${name}/${service.name}`, {
        ...service,
        tenant,
        app: name,
        instances: 10,
        state: "running",
      });
      for (let i = 0; i < 10; i++) {
        const id = `${name}-${service.name}-${i}`;
        await store.put("instance", id, {
          ...instance,
          id,
          tenant,
          app: name,
          release: release.version,
          node: nodes[(a * 10 + i) % nodes.length],
          state: "running",
          pid: undefined,
          port: 20_000 + a * 10 + i,
        });
      }
    }
  } finally {
    await store.close();
  }
}
