// The Config tab's layers, as `herd config use`: which shared versions the
// app's config is merged over (a platform version, then middleware versions
// in order; shared-config.tsx shows them). A deployer pins others: a new app
// version, given to every instance live like any change.
//
//   GET /config/catalog (apps:read) · POST /apps/:app/config/versions {platform, middleware} (apps:write)

import { useState } from "react";
import type { LayerUses, CatalogNamespace as Namespace } from "../../../src/model/config.ts";
import { ActionButton, Section } from "../components/ui.tsx";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

const refText = (r: { name: string; version: number }) => `${r.name}@${r.version}`;

/** Every version of each namespace of `layer`, newest first, as NAME@V. */
const choices = (items: Namespace[], layer: Namespace["layer"]): string[] =>
  items
    .filter((n) => n.layer === layer)
    .flatMap((n) => [...n.versions].sort((a, b) => b - a).map((v) => `${n.name}@${v}`));

export function ConfigLayers(props: {
  path: string;
  uses: LayerUses | undefined;
  mayWrite: boolean;
  done(): void;
}) {
  const { client } = useSession();
  const catalog = usePoll(
    (signal) => client.get<{ items: Namespace[] }>("/config/catalog", { signal }),
    30_000,
    [client],
  );
  const [platform, setPlatform] = useState(props.uses?.platform ? refText(props.uses.platform) : "");
  const [middleware, setMiddleware] = useState((props.uses?.middleware ?? []).map(refText).join(", "));
  const [message, setMessage] = useState("");
  const items = catalog.data?.items ?? [];
  const pinned = [
    ...(props.uses?.platform ? [`platform ${refText(props.uses.platform)}`] : []),
    ...(props.uses?.middleware ?? []).map((m) => `middleware ${refText(m)}`),
  ].join(", ");
  return (
    <Section title="Layers" id="config-layers">
      <p className="small muted" data-testid="config-layers">
        Merged under this app's config, platform first: {pinned || "none"}. The versions are the{" "}
        <Link to="/config">shared config</Link>'s.
      </p>
      {props.mayWrite ? (
        <form className="row" onSubmit={(e) => e.preventDefault()}>
          <label className="field inline">
            <span>Platform</span>
            <select
              value={platform}
              onChange={(e) => setPlatform(e.target.value)}
              data-testid="config-platform"
            >
              <option value="">none</option>
              {choices(items, "platform").map((c) => (
                <option key={c}>{c}</option>
              ))}
            </select>
          </label>
          <label className="field inline grow">
            <span>Middleware, in order</span>
            <input
              value={middleware}
              list="config-middleware-choices"
              placeholder="none, or postgres@2, cache@1"
              onChange={(e) => setMiddleware(e.target.value)}
              data-testid="config-middleware"
            />
            <datalist id="config-middleware-choices">
              {choices(items, "middleware").map((c) => (
                <option key={c} value={c} />
              ))}
            </datalist>
          </label>
          <label className="field inline">
            <span>Why</span>
            <input value={message} onChange={(e) => setMessage(e.target.value)} />
          </label>
          <ActionButton
            label="Pin"
            testId="config-pin"
            onAct={async () => {
              await client.post(`${props.path}/versions`, {
                platform: platform || null,
                middleware: middleware.split(/[\s,]+/).filter(Boolean),
                ...(message ? { message } : {}),
              });
              setMessage("");
              props.done();
            }}
          />
        </form>
      ) : null}
    </Section>
  );
}
