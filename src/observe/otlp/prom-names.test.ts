import assert from "node:assert/strict";
import { test } from "node:test";
import { promLabelName, promMetricName } from "./prom-names.ts";

test("OTel metric names become Prometheus names with unit and type suffixes", () => {
  const cases: [string, string, Parameters<typeof promMetricName>[2], string][] = [
    ["http.server.request.duration", "s", "histogram", "http_server_request_duration_seconds"],
    ["process.cpu.time", "s", "counter", "process_cpu_time_seconds_total"],
    ["system.memory.utilization", "1", "gauge", "system_memory_utilization_ratio"],
    ["app.queue.size", "{items}", "gauge", "app_queue_size"],
    ["net.io", "By/s", "gauge", "net_io_bytes_per_second"],
    ["requests", "1", "counter", "requests_total"],
    ["requests.total", "", "counter", "requests_total"],
    ["total.requests", "", "counter", "requests_total"],
    ["latency_seconds", "s", "histogram", "latency_seconds"],
    ["disk.usage", "KiBy", "gauge", "disk_usage_kibibytes"],
    ["temp", "Cel", "gauge", "temp_celsius"],
    ["odd..name__x", "ms", "summary", "odd_name_x_milliseconds"],
    ["2xx.count", "", "counter", "_2xx_count_total"],
    ["weird", "furlongs/fortnight", "gauge", "weird_furlongs_per_fortnight"],
    ["ratio.already.ratio", "1", "gauge", "ratio_already_ratio"],
  ];
  for (const [name, unit, kind, want] of cases)
    assert.equal(promMetricName(name, unit, kind), want, `${name} ${unit}`);
});

test("attribute keys become label names", () => {
  assert.equal(promLabelName("http.response.status_code"), "http_response_status_code");
  assert.equal(promLabelName("2fa"), "key_2fa");
  assert.equal(promLabelName("ok_name"), "ok_name");
});
