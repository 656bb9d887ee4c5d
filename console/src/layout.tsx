// The frame around every page: the navigation (from the router table), the
// tenant switcher, the theme switch, who is signed in and sign out.

import { type ReactNode, useEffect, useState } from "react";
import { Link, navigate, useLocation } from "./router.tsx";
import { PAGES } from "./routes.ts";
import { useSession } from "./session.tsx";

type Theme = "light" | "dark" | "system";

export function applyTheme(theme: Theme): void {
  if (theme === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
}

export function Layout({ children }: { children: ReactNode }) {
  const session = useSession();
  const { pathname, search } = useLocation();
  const [theme, setTheme] = useState<Theme>(() => (localStorage.getItem("herd.theme") as Theme) ?? "system");
  useEffect(() => {
    applyTheme(theme);
    localStorage.setItem("herd.theme", theme);
  }, [theme]);
  const switchTenant = (tenant: string) => {
    session.setTenant(tenant);
    const params = new URLSearchParams(search);
    params.set("tenant", tenant);
    // Another tenant's objects have other names: back to its overview.
    navigate(`/?${params}`);
  };
  const nav = PAGES.filter((p) => p.nav);
  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link to="/" className="brand" aria-label="herd overview">
          herd
        </Link>
        <nav aria-label="pages">
          {nav.map((p) => (
            <Link
              key={p.path}
              to={p.path}
              aria-current={
                pathname === p.path || (p.path !== "/" && pathname.startsWith(p.path)) ? "page" : undefined
              }
            >
              {p.nav}
            </Link>
          ))}
        </nav>
        <div className="spacer" />
        <label className="field inline">
          <span>Tenant</span>
          <select
            value={session.tenant}
            onChange={(e) => switchTenant(e.target.value)}
            data-testid="tenant-switcher"
          >
            {session.whoami.tenants.map((t) => (
              <option key={t.tenant} value={t.tenant}>
                {t.tenant}
              </option>
            ))}
          </select>
        </label>
        <label className="field inline">
          <span>Theme</span>
          <select value={theme} onChange={(e) => setTheme(e.target.value as Theme)}>
            <option value="system">system</option>
            <option value="light">light</option>
            <option value="dark">dark</option>
          </select>
        </label>
        <Link
          to="/team"
          className="who"
          title={`token ${session.whoami.token.name}: your tokens and the team`}
          data-testid="whoami"
        >
          {session.whoami.user ?? session.whoami.name} · {session.role}
        </Link>
        <button type="button" className="plain" onClick={session.signOut}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </div>
  );
}
