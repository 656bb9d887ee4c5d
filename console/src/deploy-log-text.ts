// A deploy's log as text, in the words `herd deploy` and `git push` print
// (common/deploy-log-format.ts), each entry after its time.

import { formatDeployEntry } from "../../src/common/deploy-log-format.ts";

/** One entry of GET /apps/:app/deploys/:id/log (NDJSON). */
export interface DeployLogLine {
  time: string;
  type: "build" | "step" | "health" | "done";
  message: string;
  state?: string;
}

/** Each line of an entry after its time (HH:MM:SS), or under it. */
export function deployLogText(lines: readonly DeployLogLine[]): string {
  return lines
    .flatMap((l) =>
      formatDeployEntry(l)
        .split("\n")
        .map((text, i) => `${i === 0 ? l.time.slice(11, 19) : " ".repeat(8)} ${text}`),
    )
    .join("\n");
}
