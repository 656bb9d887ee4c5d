// The console's pages: one file each under pages/, one line each here. A new
// page is a file and a line; `nav` puts it in the top navigation. The first
// match wins (so /traces/map comes before /traces/:id). Paths the control
// plane answers itself are not pages: /api/…, /metrics (its own Prometheus
// metrics, hence the Metrics page at /charts), /healthz.

import { AddonsPage } from "./pages/addons.tsx";
import { AlertsPage } from "./pages/alerts.tsx";
import { AppPage } from "./pages/app.tsx";
import { CatalogPage } from "./pages/catalog.tsx";
import { CatalogAppPage } from "./pages/catalog-app.tsx";
import { EventsPage } from "./pages/events.tsx";
import { GatewaysPage } from "./pages/gateways.tsx";
import { InstancePage } from "./pages/instance.tsx";
import { MetricsPage } from "./pages/metrics.tsx";
import { NodesPage } from "./pages/nodes.tsx";
import { OverviewPage } from "./pages/overview.tsx";
import { QuotasPage } from "./pages/quotas.tsx";
import { SharedConfigPage } from "./pages/shared-config.tsx";
import { TeamPage } from "./pages/team.tsx";
import { TracePage } from "./pages/trace.tsx";
import { TraceMapPage } from "./pages/trace-map.tsx";
import { TraceTopPage } from "./pages/trace-top.tsx";
import { TracesPage } from "./pages/traces.tsx";
import type { PageRoute } from "./route-match.ts";

export const PAGES: readonly PageRoute[] = [
  { path: "/", title: () => "Overview", page: OverviewPage, nav: "Overview" },
  { path: "/apps/:app", title: (p) => p.app, page: AppPage },
  { path: "/apps/:app/instances/:id", title: (p) => p.id, page: InstancePage },
  { path: "/apps/:app/deploys/:deploy", title: (p) => `${p.app} · deploy ${p.deploy}`, page: AppPage },
  { path: "/apps/:app/runs/:run", title: (p) => `${p.app} · run ${p.run}`, page: AppPage },
  { path: "/apps/:app/:tab", title: (p) => `${p.app} · ${p.tab}`, page: AppPage },
  { path: "/charts", title: () => "Metrics", page: MetricsPage, nav: "Metrics" },
  { path: "/traces", title: () => "Traces", page: TracesPage, nav: "Traces" },
  { path: "/traces/map", title: () => "Dependency map", page: TraceMapPage },
  { path: "/traces/top", title: () => "Top-N", page: TraceTopPage },
  { path: "/traces/:id", title: (p) => `Trace ${p.id.slice(-16)}`, page: TracePage },
  { path: "/alerts", title: () => "Alerts", page: AlertsPage, nav: "Alerts" },
  { path: "/addons", title: () => "Add-ons", page: AddonsPage, nav: "Add-ons" },
  { path: "/nodes", title: () => "Nodes", page: NodesPage, nav: "Nodes" },
  { path: "/gateways", title: () => "Gateways", page: GatewaysPage, nav: "Gateways" },
  { path: "/quotas", title: () => "Quotas", page: QuotasPage, nav: "Quotas" },
  // Reached from the header's "who am I" (no room in the navigation).
  { path: "/team", title: () => "Team", page: TeamPage },
  { path: "/events", title: () => "Events", page: EventsPage, nav: "Events" },
  // Reached from an app's Config tab (its layers).
  { path: "/config", title: () => "Shared config", page: SharedConfigPage },
  {
    path: "/config/:layer/:name",
    title: (p) => `${p.layer} ${p.name} · shared config`,
    page: SharedConfigPage,
  },
  { path: "/catalog", title: () => "Catalog", page: CatalogPage, nav: "Catalog" },
  { path: "/catalog/:app", title: (p) => `${p.app} · catalog`, page: CatalogAppPage },
];
