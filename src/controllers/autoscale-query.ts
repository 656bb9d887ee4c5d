/**
 * The value of an autoscale `query` target: a PromQL instant query run in
 * the API's query pool as the service's tenant (its own series only), read
 * as one number (a scalar, or the sum of a vector's samples).
 */

import { parsePromql } from "../observe/promql/parser.ts";
import { scopeToTenant } from "../observe/promql/tenancy.ts";

/** The part of the query pool this needs (observe/query-pool.ts). */
export interface InstantQueries {
  readonly maxSamples: number;
  run(job: unknown, tenant: string, timeoutMs?: number): Promise<string>;
}

/** How long one sample may take: a round is one second. */
const TIMEOUT_MS = 5000;

/** The expression's value now, as `tenant` sees it; undefined for an empty answer. */
export async function promqlValue(
  queries: InstantQueries,
  tenant: string,
  text: string,
  now = Date.now(),
): Promise<number | undefined> {
  const expr = scopeToTenant(parsePromql(text), tenant);
  const json = await queries.run(
    { kind: "instant", expr, time: now, maxSamples: queries.maxSamples },
    tenant,
    TIMEOUT_MS,
  );
  return answerValue(JSON.parse(json) as PromData);
}

type Sample = [number, string];
type PromData =
  | { resultType: "scalar"; result: Sample }
  | { resultType: "vector"; result: { value: Sample }[] }
  | { resultType: string; result: unknown };

/** A scalar's value, or the sum of a vector's; undefined for an empty vector or another type. */
export function answerValue(data: PromData): number | undefined {
  if (data.resultType === "scalar") return Number((data.result as Sample)[1]);
  if (data.resultType !== "vector") return undefined;
  const samples = data.result as { value: Sample }[];
  if (samples.length === 0) return undefined;
  return samples.reduce((sum, s) => sum + Number(s.value[1]), 0);
}
