/**
 * A PromQL worker (a node:worker_threads thread of a QueryPool, jobs.ts): reads the
 * Tsdb's file through a TsdbReader and evaluates one query at a time, so a
 * heavy query never holds the API's event loop.
 *
 *   pool ─► {id, job} ─► snapshot ─► instantQuery | rangeQuery ─► JSON text ─► {id, json} | {id, error}
 */

import { parentPort, workerData } from "node:worker_threads";
import type { WorkerReply } from "../query-pool.ts";
import { TsdbReader } from "../tsdb/reader.ts";
import { instantQuery, rangeQuery } from "./engine.ts";
import { matrixJson, valueJson } from "./format.ts";
import type { PromqlJob } from "./jobs.ts";

const port = parentPort;
if (!port) throw new Error("promql/worker.ts runs as a worker thread (see jobs.ts)");
const reader = new TsdbReader((workerData as { dir: string }).dir);
// Mirror the series index and the head now, so the first query does not wait for it.
reader.snapshot();
reader.release();

port.on("message", ({ id, job }: { id: number; job: PromqlJob }) => {
  let reply: WorkerReply;
  try {
    reader.snapshot();
    const json =
      job.kind === "instant"
        ? valueJson(instantQuery(reader, job.expr, job.time, { maxSamples: job.maxSamples }), job.time)
        : matrixJson(
            rangeQuery(reader, job.expr, job.start, job.end, job.step, { maxSamples: job.maxSamples }),
          );
    reply = { id, json };
  } catch (err) {
    const e = err as Error;
    reply = { id, error: { name: e.name, message: e.message } };
  } finally {
    reader.release();
  }
  port.postMessage(reply);
});
