// `npm run bench:autoscale [SECTION…]`: issue 12's figures. Runs every
// bench/autoscale-<section>.ts (each exports `run(): Promise<void>` that
// prints its figures with the goal and the ratio to its peer), one after the
// other, or only the sections named (`npm run bench:autoscale -- step cold`).
// A section that fails is reported and the next one still runs; the exit
// code says whether all of them ran. Sections judge their goals with
// bench/harness.ts's verdict(): `--strict` makes a missed goal exit 1 too.

import { readdirSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { benchArgs, verdictSummary } from "./harness.ts";

const DIR = import.meta.dirname;

async function main(): Promise<number> {
  const all = readdirSync(DIR)
    .map((f) => /^autoscale-([a-z0-9-]+)\.ts$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();
  const asked = benchArgs();
  const unknown = asked.filter((s) => !all.includes(s));
  if (unknown.length > 0) {
    console.error(`bench:autoscale: no section ${unknown.join(", ")} (there are: ${all.join(", ")})`);
    return 2;
  }
  const sections = asked.length > 0 ? asked : all;
  const failed: string[] = [];
  for (const section of sections) {
    const [one, five] = loadavg();
    console.log(`\n== autoscale-${section} (load average ${one.toFixed(2)}, ${five.toFixed(2)}) ==`);
    const started = performance.now();
    try {
      const mod = (await import(pathToFileURL(join(DIR, `autoscale-${section}.ts`)).href)) as {
        run?: () => Promise<void>;
      };
      if (typeof mod.run !== "function") throw new Error(`bench/autoscale-${section}.ts exports no run()`);
      await mod.run();
    } catch (err) {
      failed.push(section);
      console.error(`autoscale-${section} failed: ${(err as Error).stack ?? err}`);
    }
    console.log(`(autoscale-${section}: ${((performance.now() - started) / 1000).toFixed(1)} s)`);
  }
  if (failed.length > 0) console.error(`\nbench:autoscale: ${failed.join(", ")} did not finish`);
  const verdicts = verdictSummary("bench:autoscale");
  return failed.length > 0 ? 1 : verdicts;
}

process.exitCode = await main();
