/**
 * A trace query worker (a node:worker_threads thread of the Traces' QueryPool):
 * spans.db opened read-only, one search, trace, map or Top-N at a time, the
 * answer as JSON text — so a busy hour's map does not hold the API's event loop.
 */

import { parentPort, workerData } from "node:worker_threads";
import type { WorkerReply } from "../query-pool.ts";
import { DependencyMapBuilder, TopBuilder, traceTree } from "./analysis.ts";
import { SpanReader } from "./span-store.ts";
import type { TraceJob } from "./traces.ts";

const port = parentPort;
if (!port) throw new Error("traces/query-worker.ts runs as a worker thread (see traces.ts)");
const reader = SpanReader.open((workerData as { dir: string }).dir, Date.now);

function answer(job: TraceJob): unknown {
  switch (job.kind) {
    case "search":
      return { items: reader.search(job.query) };
    case "trace": {
      // A tenant sees its own spans of a trace (a trace may cross tenants through the gateway).
      const spans = reader.trace(job.id).filter((s) => job.tenant === undefined || s.tenant === job.tenant);
      return spans.length === 0 ? null : traceTree(job.id, spans);
    }
    case "map": {
      const builder = new DependencyMapBuilder();
      const scanned = reader.scan(job.from, job.to, (row) => builder.add(row), {
        parents: true,
        tenant: job.tenant,
      });
      return { ...builder.result(job.from, job.to), sampledEvery: scanned.sampledEvery };
    }
    case "endpoints":
      return reader.endpoints(job.query);
    case "top": {
      const builder = new TopBuilder();
      const scanned = reader.scan(job.from, job.to, (row) => builder.add(row), {
        calledThrough: true,
        tenant: job.tenant,
      });
      return { ...builder.result(job.from, job.to, job.by, job.limit), sampledEvery: scanned.sampledEvery };
    }
  }
}

port.on("message", ({ id, job }: { id: number; job: TraceJob }) => {
  let reply: WorkerReply;
  try {
    reply = { id, json: JSON.stringify(answer(job)) };
  } catch (err) {
    const e = err as Error;
    reply = { id, error: { name: e.name, message: e.message } };
  }
  port.postMessage(reply);
});
