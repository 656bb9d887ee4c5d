// A stand-in app for the OTLP tests: the standard OpenTelemetry Node SDK with
// no settings of its own (OTEL_* env only), one span, metrics and a log record.
import { logs, metrics, trace } from "@opentelemetry/api";
import { NodeSDK } from "@opentelemetry/sdk-node";

const sdk = new NodeSDK();
sdk.start();
const span = trace.getTracer("shop").startSpan("checkout", { attributes: { "http.route": "/checkout" } });
const traceId = span.spanContext().traceId;
const meter = metrics.getMeter("shop");
meter.createCounter("shop.orders", { unit: "{order}" }).add(3, { "payment.method": "card" });
meter.createHistogram("shop.checkout.duration", { unit: "s" }).record(0.25);
meter.createUpDownCounter("shop.queue.size").add(7);
logs.getLogger("shop").emit({ severityNumber: 13, body: "stock low", attributes: { sku: "a-1" } });
span.end();
await sdk.shutdown();
process.stdout.write(`${traceId}\n`);
