/**
 * Prometheus remote write (1.0) of every sample the server stores: how one
 * Prometheus (or Mimir, Thanos, VictoriaMetrics…) gets the metrics of
 * several control planes, each of which keeps its own (`--metrics-remote-write
 * URL`; docs/metrics.md).
 *
 *   Tsdb.append ─► the samples it accepted ─► RemoteWriter.add ─► BatchForwarder
 *                  ─► POST <url>: WriteRequest (protobuf), snappy block,
 *                     Content-Encoding: snappy, X-Prometheus-Remote-Write-Version: 0.1.0
 *
 * Only accepted samples go (a receiver refuses a whole request over one out of
 * order sample, and a refused request is not sent again).
 */

import { createRequire } from "node:module";
import type protobuf from "protobufjs";
import { BatchForwarder, type BatchForwarderOptions } from "./batch-forwarder.ts";
import type { WriteSeries } from "./tsdb/tsdb.ts";

const require = createRequire(import.meta.url);

/** The request body: a WriteRequest, compressed as one snappy block. */
export function encodeRemoteWrite(series: readonly WriteSeries[]): Buffer {
  const { Writer } = require("protobufjs") as typeof protobuf;
  const { compress } = require("snappyjs") as { compress: (data: Uint8Array) => Uint8Array };
  const w = Writer.create();
  for (const s of series) {
    // WriteRequest.timeseries = 1
    w.uint32((1 << 3) | 2).fork();
    // Labels sorted by name, as the protocol asks.
    for (const name of Object.keys(s.labels).sort()) {
      // TimeSeries.labels = 1: Label { name = 1; value = 2 }
      w.uint32((1 << 3) | 2)
        .fork()
        .uint32((1 << 3) | 2)
        .string(name)
        .uint32((2 << 3) | 2)
        .string(s.labels[name] as string)
        .ldelim();
    }
    for (const [ts, value] of s.samples) {
      // TimeSeries.samples = 2: Sample { double value = 1; int64 timestamp = 2 } (ms)
      w.uint32((2 << 3) | 2)
        .fork()
        .uint32((1 << 3) | 1)
        .double(value)
        .uint32((2 << 3) | 0)
        .int64(ts)
        .ldelim();
    }
    w.ldelim();
  }
  return Buffer.from(compress(w.finish()));
}

export type RemoteWriterOptions = Omit<BatchForwarderOptions<WriteSeries>, "encode">;

/** Sends series (each with its new samples) to a remote write receiver, in batches of `batchSize` series. */
export class RemoteWriter extends BatchForwarder<WriteSeries> {
  constructor(options: RemoteWriterOptions) {
    super({
      batchSize: 2000,
      maxPending: 200_000,
      ...options,
      headers: {
        "content-type": "application/x-protobuf",
        "content-encoding": "snappy",
        "x-prometheus-remote-write-version": "0.1.0",
        "user-agent": "herd",
        ...options.headers,
      },
      encode: (batch) => encodeRemoteWrite(batch),
    });
  }
}
