// The console's entry: sign in (a token), then the page the path names.
//
//   index.html ─► main.tsx ─► <SignIn> until whoami answers ─► <Layout> ─► PAGES[path] (routes.ts)

import { StrictMode, useCallback, useEffect, useMemo, useState } from "react";
import { createRoot } from "react-dom/client";
import { ApiError, Client, UNAUTHORIZED } from "./api.ts";
import { applyTheme, Layout } from "./layout.tsx";
import { NotFoundPage } from "./pages/not-found.tsx";
import { SignInPage } from "./pages/sign-in.tsx";
import { matchRoute } from "./route-match.ts";
import { navigate, useLocation } from "./router.tsx";
import { PAGES } from "./routes.ts";
import {
  chooseTenant,
  forgetToken,
  makeSession,
  SessionContext,
  storedToken,
  storeTenant,
  storeToken,
  type Whoami,
} from "./session.tsx";
import "./styles.css";

function App() {
  const [token, setToken] = useState(storedToken);
  // Who the token is, kept with the token it was asked for: signing in asks once, and a
  // second answer (a new object) would make a new session and restart every page's polls.
  const [signedIn, setSignedIn] = useState<{ token: string; whoami: Whoami }>();
  const whoami = signedIn && signedIn.token === token ? signedIn.whoami : undefined;
  const [error, setError] = useState<Error>();
  const { pathname, search } = useLocation();
  const tenant = whoami ? chooseTenant(whoami, search.get("tenant")) : undefined;
  const known = whoami !== undefined;

  useEffect(() => {
    if (!token || known) return;
    let live = true;
    new Client(token)
      .get<Whoami>("/whoami", { scoped: false })
      .then((w) => live && setSignedIn({ token, whoami: w }))
      .catch((err: Error) => {
        if (!live) return;
        // A refused token is forgotten; a control plane that is away is retried by reloading.
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
          forgetToken();
          setToken(undefined);
        }
        setError(err);
      });
    return () => {
      live = false;
    };
  }, [token, known]);

  const signIn = useCallback(async (secret: string, remember: boolean) => {
    const w = await new Client(secret).get<Whoami>("/whoami", { scoped: false });
    if (w.kind !== "user")
      throw new Error(`a ${w.kind} token cannot sign in to the console: use a user token`);
    storeToken(secret, remember);
    setError(undefined);
    setSignedIn({ token: secret, whoami: w });
    setToken(secret);
  }, []);

  const signOut = useCallback((why?: Error) => {
    forgetToken();
    setSignedIn(undefined);
    setToken(undefined);
    setError(why);
  }, []);

  const refresh = useCallback(async () => {
    if (!token) return;
    const w = await new Client(token).get<Whoami>("/whoami", { scoped: false });
    setSignedIn({ token, whoami: w });
  }, [token]);

  // A token revoked or expired while signed in: back to sign-in, saying why.
  useEffect(() => {
    const refused = (e: Event) => signOut((e as CustomEvent<Error>).detail);
    window.addEventListener(UNAUTHORIZED, refused);
    return () => window.removeEventListener(UNAUTHORIZED, refused);
  }, [signOut]);

  // One session (and one Client) per token, identity and tenant: pages' data hooks depend on it.
  const session = useMemo(
    () =>
      token && whoami && tenant
        ? makeSession(token, whoami, tenant, {
            setTenant: storeTenant,
            refresh,
            signOut: () => {
              signOut();
              navigate("/");
            },
          })
        : undefined,
    [token, whoami, tenant, refresh, signOut],
  );

  if (!session) {
    return <SignInPage onSignIn={signIn} error={error} checking={Boolean(token) && !error} />;
  }
  const found = matchRoute(PAGES, pathname);
  document.title = found ? `${found.route.title(found.params)} · herd` : "Not found · herd";
  const Page = found?.route.page;
  return (
    <SessionContext.Provider value={session}>
      <Layout>
        {/* A new tenant or object is a new page: nothing carries over. */}
        {Page ? <Page key={`${session.tenant} ${pathname}`} params={found.params} /> : <NotFoundPage />}
      </Layout>
    </SessionContext.Provider>
  );
}

applyTheme((localStorage.getItem("herd.theme") as "light" | "dark" | "system" | null) ?? "system");
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
