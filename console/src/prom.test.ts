import assert from "node:assert/strict";
import { test } from "node:test";
import { type Getter, promRange, stepFor } from "./prom.ts";

test("a range query becomes chart series on the step grid, labelled by the labels that differ", async () => {
  const asked: Record<string, unknown>[] = [];
  const client = {
    get: async (_path: string, options: { query: Record<string, number | string> }) => {
      asked.push(options.query);
      const { start, step } = options.query as { start: number; step: number };
      return {
        data: {
          resultType: "matrix",
          result: [
            {
              metric: { app: "a", tenant: "t" },
              values: [
                [start, "1"],
                [start + 2 * step, "3"],
              ],
            },
            { metric: { app: "b", tenant: "t" }, values: [[start + step, "NaN"]] },
          ],
        },
      };
    },
  } as unknown as Getter;
  const data = await promRange(client, "up", 300, undefined, 1_000_007);
  const { start, end, step } = asked[0] as { start: number; end: number; step: number };
  assert.equal(step, stepFor(300));
  assert.equal(end % step, 0);
  assert.equal(start % step, 0);
  assert.ok(end - start >= 300);
  assert.equal(data.times[0], start);
  assert.equal(data.times.at(-1), end);
  assert.deepEqual(
    data.series.map((s: { label: string }) => s.label),
    ["app=a", "app=b"],
  );
  assert.deepEqual(data.series[0].values.slice(0, 3), [1, null, 3]);
  assert.deepEqual(data.series[1].values.slice(0, 3), [null, null, null]);
});
