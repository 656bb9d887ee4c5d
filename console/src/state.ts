// The one word an app's state is shown as.

import type { App, Service } from "../../src/model/objects.ts";

const WORST_FIRST = ["failed", "rolling_back", "updating", "scaling", "pending", "destroying", "running"];

/** Its worst service's state; "no release" before the first deploy. */
export function appState(app: App, services: readonly Service[]): string {
  if (app.destroying) return "destroying";
  if (app.release === null) return "no release";
  let worst = "running";
  for (const s of services) if (WORST_FIRST.indexOf(s.state) < WORST_FIRST.indexOf(worst)) worst = s.state;
  return worst;
}
