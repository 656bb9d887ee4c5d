// The App page's logs: the app's lines and events, live over the SSE stream
// (GET /apps/:app/logs, Accept: text/event-stream), with the API's filters.
// Changing a filter starts a new stream; pausing stops it.

import { LogView } from "../components/log-view.tsx";

export function LogsTab({ app, services }: { app: string; services: string[] }) {
  return <LogView path={`/apps/${encodeURIComponent(app)}/logs`} services={services} />;
}
