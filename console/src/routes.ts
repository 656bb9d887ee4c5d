// The console's pages: one file each under pages/, one line each here. A new
// page (metrics, traces, map, alerts, nodes, catalog) is a file and a line;
// `nav` puts it in the top navigation. The first match wins.

import { AppPage } from "./pages/app.tsx";
import { InstancePage } from "./pages/instance.tsx";
import { OverviewPage } from "./pages/overview.tsx";
import type { PageRoute } from "./route-match.ts";

export const PAGES: readonly PageRoute[] = [
  { path: "/", title: () => "Overview", page: OverviewPage, nav: "Overview" },
  { path: "/apps/:app", title: (p) => p.app, page: AppPage },
  { path: "/apps/:app/instances/:id", title: (p) => p.id, page: InstancePage },
  { path: "/apps/:app/:tab", title: (p) => `${p.app} · ${p.tab}`, page: AppPage },
];
