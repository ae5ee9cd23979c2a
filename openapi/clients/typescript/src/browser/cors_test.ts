// The cross-origin browser test (.ci/run): headless Chromium, driven over WebDriver (Debian's
// chromium and chromium-driver; nothing downloaded, nothing but loopback), loads the same page
// from two origins and runs page.ts there against a gateway (`cargo xtask dev --gateway`):
//
//   node build/browser/cors_test.js --gateway http://127.0.0.1:18082 --key KEY --token TOKEN \
//     --allowed-port 18090 --other-port 18091
//
// The service must allow http://127.0.0.1:<allowed-port> (APP__CORS__ALLOW_ORIGINS) and not the
// other. From the allowed origin every step must succeed and the page must read ETag, Location
// and Idempotent-Replayed; from the other origin the browser must block the first call, and the
// gateway's own answers (seen here, outside the browser) must say why: no
// Access-Control-Allow-Origin for that origin. Exits non-zero on the first surprise.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { type AddressInfo, createServer as createTcpServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import type { Outcome } from "./page.js";

const { values } = parseArgs({
  options: {
    gateway: { type: "string" },
    key: { type: "string" },
    token: { type: "string" },
    "allowed-port": { type: "string" },
    "other-port": { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    chromedriver: { type: "string", default: "chromedriver" },
  },
});
const { gateway, key, token } = values;
const allowedPort = Number(values["allowed-port"]);
const otherPort = Number(values["other-port"]);
if (!gateway || !key || !token || !allowedPort || !otherPort) {
  console.error(
    "usage: node build/browser/cors_test.js --gateway URL --key KEY --token TOKEN --allowed-port N --other-port N",
  );
  process.exit(2);
}
const allowed = `http://127.0.0.1:${allowedPort}`;
const other = `http://127.0.0.1:${otherPort}`;

function check(condition: boolean, what: string, detail?: unknown): asserts condition {
  if (!condition) {
    throw new Error(`${what}: ${JSON.stringify(detail, null, 2)}`);
  }
}

/** The gateway's answer to a browser's preflight from `origin`, seen without a browser. */
async function preflight(origin: string): Promise<Response> {
  return fetch(`${gateway}/items`, {
    method: "OPTIONS",
    headers: {
      Origin: origin,
      "Access-Control-Request-Method": "POST",
      "Access-Control-Request-Headers": "authorization,content-type,idempotency-key,x-api-key",
    },
  });
}

function headersOf(response: Response): Record<string, string> {
  const out: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    out[name] = value;
  });
  return out;
}

// The page: an HTML file and the bundle next to this script (build/browser/page.js).
const here = path.dirname(fileURLToPath(import.meta.url));
const bundle = readFileSync(path.join(here, "page.js"));
const html = '<!DOCTYPE html>\n<meta charset="utf-8">\n<title>items: a page on another origin</title>\n' +
  '<script type="module" src="/page.js"></script>\n';

function servePage(port: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url === "/page.js") {
      res.writeHead(200, { "Content-Type": "text/javascript" }).end(bundle);
    } else if (req.url === "/") {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" }).end(html);
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createTcpServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** One W3C WebDriver command; returns `value`. */
async function webdriver(base: string, method: string, url: string, body?: unknown): Promise<any> {
  const response = await fetch(`${base}${url}`, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const reply = (await response.json()) as { value: any };
  check(response.ok, `WebDriver ${method} ${url}`, reply.value);
  return reply.value;
}

async function startChromedriver(): Promise<{ child: ChildProcess; base: string }> {
  const port = await freePort();
  const child = spawn(values.chromedriver!, [`--port=${port}`], { stdio: "ignore" });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${base}/status`)).ok) return { child, base };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill();
  throw new Error("chromedriver did not start");
}

async function main(): Promise<void> {
  // Outside the browser: the gateway passes preflights to the service, which allows one origin.
  const ok = await preflight(allowed);
  check(
    ok.status === 200 && ok.headers.get("access-control-allow-origin") === allowed,
    `the preflight from ${allowed}`,
    { status: ok.status, headers: headersOf(ok) },
  );
  const refused = await preflight(other);
  check(
    refused.headers.get("access-control-allow-origin") === null,
    `the preflight from ${other} has no Access-Control-Allow-Origin`,
    { status: refused.status, headers: headersOf(refused) },
  );

  const servers = [await servePage(allowedPort), await servePage(otherPort)];
  const driver = await startChromedriver();
  const profile = mkdtempSync(path.join(tmpdir(), "items-cors-chromium-"));
  let session: string | undefined;
  try {
    const created = await webdriver(driver.base, "POST", "/session", {
      capabilities: {
        alwaysMatch: {
          browserName: "chrome",
          "goog:chromeOptions": {
            binary: values.chromium,
            // The flags GUIDE.md §5 names: without them Chromium's own network calls stall.
            args: [
              "--headless",
              "--no-sandbox",
              "--disable-gpu",
              "--disable-quic",
              "--no-first-run",
              "--disable-background-networking",
              "--disable-component-update",
              "--disable-sync",
              "--disable-dev-shm-usage",
              `--user-data-dir=${profile}`,
            ],
          },
          "goog:loggingPrefs": { browser: "ALL" },
        },
      },
    });
    session = created.sessionId as string;
    await webdriver(driver.base, "POST", `/session/${session}/timeouts`, { script: 60_000 });

    const runFrom = async (origin: string): Promise<Outcome> => {
      await webdriver(driver.base, "POST", `/session/${session}/url`, { url: `${origin}/` });
      return webdriver(driver.base, "POST", `/session/${session}/execute/async`, {
        script:
          "const done = arguments[arguments.length - 1];" +
          "if (typeof window.runScenario !== 'function') { done({ error: 'page.js did not load', steps: [] }); }" +
          "else { window.runScenario(arguments[0]).then(done); }",
        args: [{ gateway, key, token }],
      });
    };

    // The allowed origin: every call succeeds and the page reads the exposed headers.
    const good = await runFrom(allowed);
    console.log(JSON.stringify(good, null, 2));
    check(good.error === undefined, `from ${allowed}: no call may fail`, good);
    const step = (name: string) => good.steps.find((s) => s.step === name) ?? {};
    const create = step("create");
    check(create.status === 201, "create: 201", good);
    check(typeof create.etag === "string" && typeof create.location === "string", "create: the page reads ETag and Location", good);
    check(step("create again").status === 201 && step("create again").replayed === "true", "a replayed create: the page reads Idempotent-Replayed", good);
    check(step("get").status === 200 && step("get").etag === create.etag, "get: 200 with the same ETag", good);
    check(step("patch").status === 200 && step("patch").etag !== create.etag, "patch with If-Match: 200 and a new ETag", good);
    check(step("list").status === 200 && Number(step("list").items) >= 1, "list: 200 with items", good);

    // Another origin: the browser blocks the first call (its preflight gets no Allow-Origin).
    const blocked = await runFrom(other);
    console.log(JSON.stringify(blocked, null, 2));
    check(blocked.steps.length === 0 && /Failed to fetch/.test(blocked.error ?? ""), `from ${other}: the browser blocks the call`, blocked);
    const console_ = (await webdriver(driver.base, "POST", `/session/${session}/se/log`, { type: "browser" })) as { message: string }[];
    check(
      console_.some((m) => m.message.includes(`from origin '${other}' has been blocked by CORS policy`)),
      "Chromium says the call was blocked by CORS policy",
      console_,
    );
    console.log(`cors browser test: ${allowed} create, get, patch (If-Match), list ok; ${other} blocked by CORS policy`);
  } finally {
    if (session) {
      await webdriver(driver.base, "DELETE", `/session/${session}`).catch(() => undefined);
    }
    driver.child.kill();
    for (const server of servers) server.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(String(e instanceof Error ? e.message : e));
  process.exit(1);
});
