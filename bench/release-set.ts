// Issue 14, "a 10-app set applied in dependency order, time and zero failed
// requests under traffic". One real `herd up`, 10 apps (one web instance each,
// its own host) in four layers: app0; app1-3 depend on app0; app4-6 on
// app1-3; app7-9 on app4-6. Each has releases v1 and v2. Steady traffic to
// every app's host (8 requests/s each, 80 in all). In paired rounds (A B A B,
// BENCH_ROUNDS, default 2), every app moves to the other version:
//
//   A  herd    `herd set apply`: the set controller moves the apps
//              dependencies first, each healthy before its dependents. The
//              steps' timestamps are checked to be in dependency order.
//   B  peer    the same moves by hand: `herd rollback vN --app X`, one app
//              after another in the same order (each waits for its rollout).
//
// Time: from the command to its end. Failed requests: over the same span.
// Part of `npm run bench:release` (BENCH_ONLY=set runs this part alone).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { VersionSet } from "../src/model/version-set.ts";
import { cleanupHerd, type Herd, startHerd, steadyTraffic, type Traffic } from "../test/e2e/harness.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const APPS = Array.from({ length: 10 }, (_, i) => `app${i}`);
/** app0; app1-3 → app0; app4-6 → app1-3 (one each); app7-9 → app4-6. */
const DEPENDS: Record<string, string[]> = Object.fromEntries(
  APPS.map((a, i) => [a, i === 0 ? [] : i <= 3 ? ["app0"] : [`app${i - 3}`]]),
);

function writeApp(work: string, app: string): string {
  const dir = join(work, app);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: app, private: true, type: "module" }));
  writeFileSync(
    join(dir, "server.js"),
    'import { createServer } from "node:http";\ncreateServer((req, res) => res.end("release " + process.env.HERD_RELEASE)).listen(Number(process.env.PORT));\n',
  );
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      `app: ${app}`,
      "services:",
      "  web:",
      "    command: node server.js",
      "    resources: { cpu: 0.05, memory: 32Mi }",
      "    health: { path: / }",
      `    routes: [{ host: ${app}.localhost }]`,
      "",
    ].join("\n"),
  );
  return dir;
}

const setFile = (version: number) =>
  `set: bench\napps:\n${APPS.map((a) => `  ${a}: { version: ${version}${DEPENDS[a]?.length ? `, dependsOn: [${DEPENDS[a]?.join(", ")}]` : ""} }`).join("\n")}\n`;

/** The order apps move in: layer by layer. */
const ORDER = [...APPS];

export async function runSet(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "herd-bench-set-"));
  let herd: Herd | undefined;
  const traffic: Traffic[] = [];
  try {
    herd = await startHerd();
    const h = herd;
    const dirs = APPS.map((a) => writeApp(work, a));
    for (const round of [1, 2])
      for (let i = 0; i < dirs.length; i += 5)
        await Promise.all(
          dirs.slice(i, i + 5).map(async (d) => {
            const r = await h.cli(["deploy", d], { timeoutMs: 180_000 });
            if (r.code !== 0) throw new Error(`deploy ${d} (v${round}) failed:\n${r.stdout}${r.stderr}`);
          }),
        );
    for (const a of APPS)
      traffic.push(
        steadyTraffic(h.gatewayUrl, `${a}.localhost`, { connections: 2, rate: 8, maxSeconds: 1500 }),
      );
    const counts = () =>
      traffic.reduce(
        (s, t) => {
          const c = t.counts();
          return { total: s.total + c.total, failed: s.failed + c.failed };
        },
        { total: 0, failed: 0 },
      );
    await new Promise((r) => setTimeout(r, 3000));
    if (counts().failed > 0) throw new Error("requests fail before the bench starts");
    const sets: { s: number; failed: number; total: number }[] = [];
    const peers: { s: number; failed: number; total: number }[] = [];
    // Every app serves v2's content; each phase moves all of them to the other version.
    let version = 2;
    let setVersion = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const phase of ["set", "peer"] as const) {
        version = version === 2 ? 1 : 2;
        const before = counts();
        const began = performance.now();
        if (phase === "set") {
          writeFileSync(join(work, "herd.set.yaml"), setFile(version));
          const r = await h.cli(["set", "apply"], { cwd: work, timeoutMs: 600_000 });
          if (r.code !== 0) throw new Error(`herd set apply failed:\n${r.stdout}${r.stderr}`);
          setVersion++;
          const set = (await h.api<VersionSet>("GET", `/sets/bench/versions/${setVersion}`)).body;
          const moved = set.steps.filter((s) => s.state === "done");
          if (set.state !== "applied" || moved.length !== APPS.length)
            throw new Error(`set v${setVersion} did not move every app: ${JSON.stringify(set.steps)}`);
          const at = new Map(set.steps.map((s) => [s.app, s]));
          for (const [app, deps] of Object.entries(DEPENDS))
            for (const d of deps)
              if ((at.get(d)?.doneAt ?? "") > (at.get(app)?.startedAt ?? ""))
                throw new Error(`${app} started moving before ${d} ran healthy`);
        } else {
          for (const app of ORDER) {
            // A rollback to vN makes a new release; the content is what counts.
            const r = await h.cli(["rollback", `v${version}`, "--app", app], { timeoutMs: 180_000 });
            if (r.code !== 0)
              throw new Error(`herd rollback v${version} --app ${app} failed:\n${r.stdout}${r.stderr}`);
          }
        }
        const s = (performance.now() - began) / 1000;
        await new Promise((r) => setTimeout(r, 2000));
        const after = counts();
        (phase === "set" ? sets : peers).push({
          s,
          failed: after.failed - before.failed,
          total: after.total - before.total,
        });
      }
    }
    const [one, five] = loadavg();
    console.log(
      `\nload average ${one.toFixed(2)}, ${five.toFixed(2)} (figures move with it); traffic 80 req/s over 10 hosts`,
    );
    const fmt = (xs: typeof sets) =>
      xs.map((x) => `${x.s.toFixed(1)} s (${x.failed} of ${x.total} failed)`).join(", ");
    console.log(`10-app set in dependency order (herd set apply): ${fmt(sets)}`);
    console.log(`peer (herd rollback per app, same order, one after another): ${fmt(peers)}`);
    const mean = (xs: typeof sets) => xs.reduce((a, x) => a + x.s, 0) / xs.length;
    console.log(
      `ratio time set / by hand: ×${(mean(sets) / mean(peers)).toFixed(3)}; failed requests during sets: ${sets.reduce((a, x) => a + x.failed, 0)}`,
    );
  } finally {
    await Promise.all(traffic.map((t) => t.stop()));
    await cleanupHerd(herd);
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) await runSet();
