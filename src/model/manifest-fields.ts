/**
 * The small field types herd.yaml's schemas share: names, quantities and
 * secret names (model/manifest*.ts).
 */

import { Type as T } from "@sinclair/typebox";
import { QUANTITY_RULE } from "./manifest-messages.ts";

/** Names of tenants, apps and services: DNS labels. */
export const NAME_PATTERN = "^[a-z][a-z0-9-]{0,39}$";
export const Name = T.String({
  pattern: NAME_PATTERN,
  description: "lowercase letters, digits and dashes; starts with a letter; at most 40",
});
export const Quantity = T.Union(
  [T.Number({ exclusiveMinimum: 0 }), T.String({ pattern: "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|K|M|G)?$" })],
  { description: QUANTITY_RULE },
);

/** Names of secrets (herd secrets set NAME). */
export const SECRET_NAME_PATTERN = "^[A-Za-z][A-Za-z0-9_-]{0,63}$";
export const SecretName = T.String({
  pattern: SECRET_NAME_PATTERN,
  description: "letters, digits, _ and -, starting with a letter; at most 64",
});
