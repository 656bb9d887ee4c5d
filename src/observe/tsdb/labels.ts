/**
 * Series identity: a metric name plus labels. The name is the `__name__`
 * label, as in Prometheus; a label with an empty value is the same as no label.
 */

/** Labels of one series, `__name__` included. */
export type Labels = Record<string, string>;

export const NAME = "__name__";

/** Labels without empty values, keys sorted: the form the store keeps. */
export function normalizeLabels(labels: Labels): Labels {
  const out: Labels = {};
  for (const k of Object.keys(labels).sort()) {
    const v = labels[k];
    if (v !== "" && v !== undefined) out[k] = v;
  }
  return out;
}

/** A stable string for a label set (the series key): `name{a="1",b="2"}` with sorted keys. */
export function labelsKey(labels: Labels): string {
  let out = "";
  for (const k of Object.keys(labels).sort()) {
    const v = labels[k];
    if (v === "" || v === undefined) continue;
    out += `${k}=${JSON.stringify(v)},`;
  }
  return out;
}

export type MatchOp = "=" | "!=" | "=~" | "!~";

/** One label matcher of a selector, e.g. `job=~"api|web"`. */
export interface Matcher {
  name: string;
  op: MatchOp;
  value: string;
}

/** A matcher compiled once per query: regexes are anchored, as in Prometheus. */
export function compileMatcher(m: Matcher): (labels: Labels) => boolean {
  const { name, op, value } = m;
  if (op === "=") return (l) => (l[name] ?? "") === value;
  if (op === "!=") return (l) => (l[name] ?? "") !== value;
  const re = new RegExp(`^(?:${value})$`);
  if (op === "=~") return (l) => re.test(l[name] ?? "");
  return (l) => !re.test(l[name] ?? "");
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export const isMetricName = (s: string): boolean => METRIC_NAME.test(s);
export const isLabelName = (s: string): boolean => LABEL_NAME.test(s);
