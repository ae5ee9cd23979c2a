// Exercises the generated client against a live service: node build/smoke.js BASE_URL
// (.ci/run runs it against `cargo xtask dev`). Exits non-zero on the first surprise.
import { createItemsClient, type Problem } from "./index.js";

const baseUrl = process.argv[2] ?? process.env.ITEMS_BASE_URL;
if (!baseUrl) {
  console.error("usage: node build/smoke.js BASE_URL");
  process.exit(2);
}
const client = createItemsClient(baseUrl);

function check(condition: boolean, what: string, detail?: unknown): asserts condition {
  if (!condition) {
    throw new Error(`${what}: ${JSON.stringify(detail)}`);
  }
}

function expectProblem(error: Problem | undefined, status: number, what: string): void {
  check(error !== undefined && error.status === status, `${what} answers a ${status} problem`, error);
  check(typeof error.title === "string" && typeof error.detail === "string", `${what} problem has title and detail`, error);
}

const name = `ts client ${Date.now()}`;
const created = await client.POST("/items", {
  params: { header: { "Idempotency-Key": `ts-${Date.now()}` } },
  body: { name, description: "made by the TypeScript client" },
});
check(created.response.status === 201 && created.data !== undefined, "create", created.error);
const item = created.data;
const etag = created.response.headers.get("ETag");
check(etag !== null, "create returns an ETag");

const got = await client.GET("/items/{id}", { params: { path: { id: item.id } } });
check(got.response.status === 200 && got.data?.name === name, "get", got.error);

const listed = await client.GET("/items", { params: { query: { page_size: 100 } } });
check(listed.data !== undefined && listed.data.items.some((i) => i.id === item.id), "list", listed.error);

const patched = await client.PATCH("/items/{id}", {
  params: { path: { id: item.id }, header: { "If-Match": etag } },
  body: { description: null },
});
check(patched.response.status === 200 && patched.data?.description == null, "patch with If-Match", patched.error);

const stale = await client.PATCH("/items/{id}", {
  params: { path: { id: item.id }, header: { "If-Match": etag } },
  body: { name: "lost update" },
});
expectProblem(stale.error, 412, "patch with a stale If-Match");

const deleted = await client.DELETE("/items/{id}", { params: { path: { id: item.id } } });
check(deleted.response.status === 204, "delete", deleted.error);

const gone = await client.GET("/items/{id}", { params: { path: { id: item.id } } });
expectProblem(gone.error, 404, "get after delete");

console.log("typescript client: create, get, list, patch (If-Match), 412 and 404 problems, delete: ok");
