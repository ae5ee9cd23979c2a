// The typed client of the items API: `paths` and `components` are generated from
// openapi/items.openapi.json by openapi-typescript (`cargo xtask render`, never by hand);
// requests go through openapi-fetch, so paths, parameters, bodies and responses are type-checked.
import createClient, { type Client, type ClientOptions } from "openapi-fetch";

import type { components, paths } from "./schema.js";

export type { components, operations, paths } from "./schema.js";

/** An item as the API returns it. */
export type Item = components["schemas"]["ItemResponse"];
/** One page of `GET /items`. */
export type ItemList = components["schemas"]["ItemList"];
/** The body of every error response (RFC 9457 `application/problem+json`). */
export type Problem = components["schemas"]["Problem"];

/**
 * A client for the API at `baseUrl` (the service, or an API Gateway URL: then pass the API key,
 * e.g. `headers: { "x-api-key": KEY }`).
 */
export function createItemsClient(
  baseUrl: string,
  options: Omit<ClientOptions, "baseUrl"> = {},
): Client<paths> {
  return createClient<paths>({ ...options, baseUrl });
}
