// App: one app's page, in tabs that are deep links of their own:
//   /apps/:app           services and instances (live), scale, routes, env and secret names
//   /apps/:app/releases  releases with who and when, roll back
//   /apps/:app/deploys   deploy history (state, who, when); /apps/:app/deploys/:deploy opens one's build log
//   /apps/:app/deploy    deploy from an uploaded archive, its build log
//   /apps/:app/events    the events timeline
//   /apps/:app/logs      live logs (SSE) with filters
//   /apps/:app/runs      scheduled jobs, runs, run a command; /apps/:app/runs/:run opens one with its output
//   /apps/:app/traffic   routes with their policies; per service its traffic policies, degrade, limits
//   /apps/:app/config    the config center: effective config, change, gray release, history
//   /apps/:app/automation autoscaling status and decisions; the remediation engine: switches, rules, decisions

import type { App, Service } from "../../../src/model/objects.ts";
import { ErrorBox, Loading, StateBadge } from "../components/ui.tsx";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { appState } from "../state.ts";
import { usePoll } from "../use-poll.ts";
import { AutomationTab } from "./app-automation.tsx";
import { ConfigTab } from "./app-config.tsx";
import { DeployTab } from "./app-deploy.tsx";
import { DeploysTab } from "./app-deploys.tsx";
import { EventsTab } from "./app-events.tsx";
import { LogsTab } from "./app-logs.tsx";
import { ReleasesTab } from "./app-releases.tsx";
import { RunsTab } from "./app-runs.tsx";
import { ServicesTab } from "./app-services.tsx";
import { TrafficTab } from "./app-traffic.tsx";
import { NotFoundPage } from "./not-found.tsx";

/** GET /apps/:app */
export interface AppDetail {
  app: App;
  revision: number;
  services: (Service & { revision: number })[];
}

const TABS = [
  { id: "", label: "Services" },
  { id: "releases", label: "Releases" },
  { id: "deploys", label: "Deploys" },
  { id: "deploy", label: "Deploy" },
  { id: "events", label: "Events" },
  { id: "logs", label: "Logs" },
  { id: "runs", label: "Runs" },
  { id: "traffic", label: "Traffic" },
  { id: "config", label: "Config" },
  { id: "automation", label: "Automation" },
] as const;

export function AppPage({ params }: { params: Record<string, string> }) {
  const { client } = useSession();
  const name = params.app;
  const tab = params.tab ?? (params.deploy ? "deploys" : params.run ? "runs" : "");
  const detail = usePoll(
    (signal) => client.get<AppDetail>(`/apps/${encodeURIComponent(name)}`, { signal }),
    3000,
    [client, name],
  );
  if (!TABS.some((t) => t.id === tab)) return <NotFoundPage />;
  const base = `/apps/${encodeURIComponent(name)}`;
  const d = detail.data;
  return (
    <div className="page">
      <nav className="crumbs" aria-label="breadcrumb">
        <Link to="/">Overview</Link> / <span>{name}</span>
      </nav>
      <h1>
        {name}{" "}
        {d ? (
          <>
            <StateBadge state={appState(d.app, d.services)} />{" "}
            <span className="muted">{d.app.release === null ? "" : `v${d.app.release}`}</span>
          </>
        ) : null}
      </h1>
      <nav className="tabs" aria-label={`${name} sections`}>
        {TABS.map((t) => (
          <Link
            key={t.id}
            to={t.id ? `${base}/${t.id}` : base}
            aria-current={t.id === tab ? "page" : undefined}
          >
            {t.label}
          </Link>
        ))}
      </nav>
      <ErrorBox error={detail.error} />
      {tab === "deploy" ? (
        // An app that does not exist yet can be deployed (a first deploy creates it).
        <DeployTab app={name} onDeployed={detail.reload} />
      ) : !d ? (
        detail.error ? null : (
          <Loading what={name} />
        )
      ) : tab === "" ? (
        <ServicesTab detail={d} reload={detail.reload} />
      ) : tab === "releases" ? (
        <ReleasesTab detail={d} reload={detail.reload} />
      ) : tab === "deploys" ? (
        <DeploysTab app={name} open={params.deploy} />
      ) : tab === "events" ? (
        <EventsTab app={name} />
      ) : tab === "runs" ? (
        <RunsTab detail={d} open={params.run} />
      ) : tab === "traffic" ? (
        <TrafficTab detail={d} reload={detail.reload} />
      ) : tab === "config" ? (
        <ConfigTab app={name} />
      ) : tab === "automation" ? (
        <AutomationTab app={name} />
      ) : (
        <LogsTab app={name} services={d.services.map((s) => s.name)} />
      )}
    </div>
  );
}
