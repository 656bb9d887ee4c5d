// A deploy's log as the console shows it: build output, rollout steps, health
// checks and the outcome, each with its time (deploy-log-text.ts).

import { type DeployLogLine, deployLogText } from "../deploy-log-text.ts";

export type { DeployLogLine };

export function DeployLogView({ lines, testId }: { lines: readonly DeployLogLine[]; testId: string }) {
  return (
    <pre className="log" aria-live="polite" data-testid={testId}>
      {deployLogText(lines)}
    </pre>
  );
}
