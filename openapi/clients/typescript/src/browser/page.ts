// The page of the cross-origin browser test (cors_test.ts serves it, bundled by esbuild with the
// client into build/browser/page.js, no CDN): what a web app on another origin does with the
// TypeScript client through API Gateway: create, read ETag/Location, replay a create,
// get, patch with If-Match, list. Every step's status and the headers the page could read.
import { createItemsClient } from "../index.js";

/** Where and as whom the page calls the API. */
export interface Scenario {
  gateway: string;
  key: string;
  token: string;
}

/** What the page saw, step by step; `error` when a call did not complete (a CORS refusal). */
export interface Outcome {
  origin: string;
  steps: Record<string, unknown>[];
  error?: string;
}

async function run({ gateway, key, token }: Scenario, outcome: Outcome): Promise<void> {
  // The key as x-api-key and the token as Authorization: headers, so every call is preflighted.
  const client = createItemsClient(gateway, {
    headers: { "x-api-key": key, Authorization: `Bearer ${token}` },
  });
  const step = (name: string, response: Response, extra: Record<string, unknown> = {}) =>
    outcome.steps.push({ step: name, status: response.status, ...extra });

  const idempotencyKey = `cors-${Date.now()}-${Math.random().toString(16).slice(2)}`;
  const body = { name: `from ${location.origin}`, description: "made by a page on another origin" };
  const create = () =>
    client.POST("/items", { params: { header: { "Idempotency-Key": idempotencyKey } }, body });
  const created = await create();
  const etag = created.response.headers.get("ETag");
  step("create", created.response, { etag, location: created.response.headers.get("Location") });
  const replayed = await create();
  step("create again", replayed.response, {
    replayed: replayed.response.headers.get("Idempotent-Replayed"),
  });
  const id = created.data?.id;
  if (id === undefined || etag === null) {
    return;
  }
  const got = await client.GET("/items/{id}", { params: { path: { id } } });
  step("get", got.response, { name: got.data?.name, etag: got.response.headers.get("ETag") });
  const patched = await client.PATCH("/items/{id}", {
    params: { path: { id }, header: { "If-Match": etag } },
    body: { description: "patched from a page on another origin" },
  });
  step("patch", patched.response, {
    description: patched.data?.description,
    etag: patched.response.headers.get("ETag"),
  });
  const listed = await client.GET("/items", { params: { query: { page_size: 100 } } });
  step("list", listed.response, { items: listed.data?.items.length });
}

declare global {
  interface Window {
    runScenario: (scenario: Scenario) => Promise<Outcome>;
  }
}

window.runScenario = async (scenario) => {
  const outcome: Outcome = { origin: location.origin, steps: [] };
  try {
    await run(scenario, outcome);
  } catch (e) {
    outcome.error = String(e);
  }
  return outcome;
};
