// Which page a path shows: `/apps/:app/:tab` patterns, the first match wins.

import type { ReactNode } from "react";

/** One page of the console: a path pattern and what it shows. */
export interface PageRoute {
  /** `/apps/:app` style; `:name` matches one segment. */
  path: string;
  /** The page title (the browser tab shows it). */
  title: (params: Record<string, string>) => string;
  page: (props: { params: Record<string, string> }) => ReactNode;
  /** Shown in the top navigation under this label. */
  nav?: string;
}

/** The route a path matches and its parameters, or undefined. */
export function matchRoute(
  routes: readonly PageRoute[],
  pathname: string,
): { route: PageRoute; params: Record<string, string> } | undefined {
  const parts = pathname.split("/").filter(Boolean);
  for (const route of routes) {
    const pattern = route.path.split("/").filter(Boolean);
    if (pattern.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < pattern.length; i++) {
      if (pattern[i].startsWith(":")) params[pattern[i].slice(1)] = decodeURIComponent(parts[i]);
      else if (pattern[i] !== parts[i]) ok = false;
    }
    if (ok) return { route, params };
  }
  return undefined;
}
