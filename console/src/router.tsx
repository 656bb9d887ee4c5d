// A small history router: paths like /apps/:app/:tab matched against the
// table in routes.ts, links that keep ?tenant=, and a hook for the location.
// Every object has a path, so every view is a deep link the server answers
// with index.html (src/api/routes/console.ts).

import { type AnchorHTMLAttributes, type MouseEvent, useSyncExternalStore } from "react";

const subscribe = (notify: () => void) => {
  window.addEventListener("popstate", notify);
  return () => window.removeEventListener("popstate", notify);
};

/** The current path and query; re-renders on navigation. */
export function useLocation(): { pathname: string; search: URLSearchParams } {
  const href = useSyncExternalStore(subscribe, () => window.location.pathname + window.location.search);
  const url = new URL(href, window.location.origin);
  return { pathname: url.pathname, search: url.searchParams };
}

/** A path with the current ?tenant= kept (deep links name the tenant). */
export function withTenant(to: string): string {
  const tenant = new URLSearchParams(window.location.search).get("tenant");
  if (!tenant || to.includes("tenant=")) return to;
  return `${to}${to.includes("?") ? "&" : "?"}tenant=${encodeURIComponent(tenant)}`;
}

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (options.replace) window.history.replaceState(null, "", to);
  else window.history.pushState(null, "", to);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

/** An <a> that navigates inside the console (a middle click or ctrl-click opens a tab as usual). */
export function Link(props: AnchorHTMLAttributes<HTMLAnchorElement> & { to: string }) {
  const { to, ...rest } = props;
  const href = withTenant(to);
  const onClick = (e: MouseEvent<HTMLAnchorElement>) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return <a {...rest} href={href} onClick={onClick} />;
}
