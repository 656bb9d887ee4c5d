/**
 * A service's scheduled jobs (herd.yaml `jobs:`) as batch/v1 CronJobs: the
 * service's image, env, secrets and resources, the job's command, schedule,
 * concurrency, time limit and history. Their pods carry a job label instead of
 * the service's selector, so the service's Service never routes to them.
 */

import type { ICronJob } from "kubernetes-models/batch/v1/CronJob";
import type { JobSpec } from "../model/job.ts";
import { fitLabel } from "./kubernetes-names.ts";
import { DATA_DIR, envOf, resourcesOf, securityOf, type WorkloadInput } from "./kubernetes-workload.ts";

/** CronJob names leave 11 characters for the Jobs it makes (Kubernetes allows 52). */
const MAX_CRONJOB_NAME = 52;

const CONCURRENCY = { allow: "Allow", forbid: "Forbid", replace: "Replace" } as const;

/** The service's jobs whose schedule Kubernetes reads (5 fields); 6-field ones (seconds) are warnings. */
export function cronJobsOf(input: WorkloadInput): { cronJobs: ICronJob[]; warnings: string[] } {
  const cronJobs: ICronJob[] = [];
  const warnings: string[] = [];
  for (const [job, spec] of Object.entries(input.spec.jobs ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    if (spec.schedule.trim().split(/\s+/).length !== 5) {
      warnings.push(
        `${input.service}: job ${job}'s schedule "${spec.schedule}" has seconds; a CronJob takes 5 fields: not exported`,
      );
      continue;
    }
    cronJobs.push(cronJobOf(input, job, spec));
  }
  return { cronJobs, warnings };
}

function cronJobOf(input: WorkloadInput, job: string, spec: JobSpec): ICronJob {
  const { names, service } = input;
  const name = fitLabel(`${names.app}-${service}-${job}`, MAX_CRONJOB_NAME);
  const labels = {
    "app.kubernetes.io/name": names.app,
    "app.kubernetes.io/component": fitLabel(`${service}-${job}`),
    "app.kubernetes.io/version": `v${input.release}`,
    "app.kubernetes.io/managed-by": "herd",
  };
  const security = securityOf(input.spec);
  return {
    apiVersion: "batch/v1",
    kind: "CronJob",
    metadata: { name, labels },
    spec: {
      schedule: spec.schedule,
      concurrencyPolicy: CONCURRENCY[spec.concurrency],
      successfulJobsHistoryLimit: spec.history,
      failedJobsHistoryLimit: spec.history,
      jobTemplate: {
        spec: {
          activeDeadlineSeconds: Math.max(1, Math.ceil(spec.timeoutMs / 1000)),
          backoffLimit: 0,
          template: {
            metadata: { labels },
            spec: {
              restartPolicy: "Never",
              containers: [
                {
                  name: job,
                  image: input.image,
                  command: ["/bin/sh", "-c", spec.command],
                  env: envOf(input),
                  resources: resourcesOf(input.spec.resources),
                  volumeMounts: [{ name: "data", mountPath: DATA_DIR }],
                  ...(security.container ? { securityContext: security.container } : {}),
                },
              ],
              ...(security.pod ? { securityContext: security.pod } : {}),
              volumes: [{ name: "data", emptyDir: {} }],
              ...input.scheduling,
            },
          },
        },
      },
    },
  };
}
