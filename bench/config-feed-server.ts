// The feed side of bench:config, in its own process: one ConfigFeed (the
// agent's, src/config-center/feed.ts) with one channel per simulated
// instance, keys checked as the agent checks them. The parent sends
// {publish: version}; the feed publishes it to every channel and answers
// {published, publishMs}. Each channel gets its own copy of the document, as an
// agent does (one per instance, parsed from its heartbeat reply): the feed
// must not serialize it per subscriber. The copies are made before the
// parent's clock starts ({prepare: version} → {prepared}).

import { ConfigFeed } from "../src/config-center/feed.ts";
import { feedKey } from "../src/config-center/instance-files.ts";
import type { EffectiveConfig } from "../src/model/config.ts";

const CHANNELS = Number(process.argv[2] ?? 10_000);
const SECRET = "bench";

const doc = (version: number): EffectiveConfig => ({
  tenant: "bench",
  app: "app",
  version,
  values: { GREETING: `hello v${version}`, POOL: String(version % 16) },
  files: { "app.yaml": { format: "yaml", content: `version: ${version}\nfeature: on\n` } },
  origins: { GREETING: `app v${version}`, POOL: `app v${version}`, "app.yaml": `app v${version}` },
});

// Keys computed once per channel, as the agent's feed keeps them (config-center/agent-feed.ts).
const keys = new Map(Array.from({ length: CHANNELS }, (_, i) => [`i${i}`, feedKey(SECRET, `i${i}`)]));
const feed = new ConfigFeed({ authorize: (id, key) => key === keys.get(id) });
const first = doc(1);
for (let i = 0; i < CHANNELS; i++) feed.publish(`i${i}`, first);
const { port } = await feed.listen(0);
process.send?.({ port });
let copies: EffectiveConfig[] = [];
process.on("message", (m: { prepare?: number; publish?: number; cpu?: boolean; following?: boolean }) => {
  if (m.cpu) process.send?.({ cpu: process.cpuUsage() });
  if (m.following) process.send?.({ followers: feed.following() });
  if (m.prepare !== undefined) {
    const text = JSON.stringify(doc(m.prepare));
    copies = Array.from({ length: CHANNELS }, () => JSON.parse(text) as EffectiveConfig);
    process.send?.({ prepared: m.prepare });
  }
  if (m.publish === undefined) return;
  const t0 = performance.now();
  for (let i = 0; i < CHANNELS; i++) feed.publish(`i${i}`, copies[i] as EffectiveConfig);
  process.send?.({ published: m.publish, publishMs: performance.now() - t0 });
});
process.on("disconnect", () => {
  void feed.close().then(() => process.exit(0));
});
