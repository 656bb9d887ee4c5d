import assert from "node:assert/strict";
import { test } from "node:test";
import { parseOtlpLogs } from "./logs.ts";

const NOW = 1_700_000_000_000;
const res = (attrs: Record<string, string>) => ({
  attributes: Object.entries(attrs).map(([key, v]) => ({ key, value: { stringValue: v } })),
});

test("log records become log entries of their instance, with level and trace", () => {
  const entries = parseOtlpLogs(
    {
      resourceLogs: [
        {
          resource: res({
            "herd.tenant": "acme",
            "herd.app": "shop",
            "herd.service": "web",
            "herd.instance": "web-1",
          }),
          scopeLogs: [
            {
              logRecords: [
                { timeUnixNano: "1700000000500000000", severityNumber: 9, body: { stringValue: "plain" } },
                {
                  severityText: "WARN",
                  body: { stringValue: "slow" },
                  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
                  spanId: "00f067aa0ba902b7",
                  attributes: [{ key: "ms", value: { intValue: "900" } }],
                },
                {
                  severityNumber: 21,
                  body: { kvlistValue: { values: [{ key: "a", value: { boolValue: true } }] } },
                },
              ],
            },
          ],
        },
        {
          resource: res({ "service.name": "billing/api" }),
          scopeLogs: [{ logRecords: [{ body: { stringValue: "x" } }] }],
        },
      ],
    },
    NOW,
  );
  const owner = { tenant: "acme", app: "shop", service: "web", instance: "web-1" };
  assert.deepEqual(entries, [
    { ...owner, time: "2023-11-14T22:13:20.500Z", stream: "stdout", line: "plain", level: "info" },
    {
      ...owner,
      time: new Date(NOW).toISOString(),
      stream: "stdout",
      line: '{"ms":"900","msg":"slow","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}',
      level: "warn",
    },
    { ...owner, time: new Date(NOW).toISOString(), stream: "stderr", line: '{"a":true}', level: "fatal" },
    {
      tenant: "",
      app: "billing",
      service: "api",
      instance: "",
      time: new Date(NOW).toISOString(),
      stream: "stdout",
      line: "x",
    },
  ]);
});

test("bad log records are named", () => {
  assert.throws(
    () => parseOtlpLogs({ resourceLogs: [{ scopeLogs: [{ logRecords: [7] }] }] }, NOW),
    (err: Error & { details?: { field: string }[] }) =>
      err.details?.[0]?.field === "resourceLogs[0].scopeLogs[0].logRecords[0]",
  );
});
