#!/usr/bin/env node
// Clicks through the gateway's Swagger UI in Debian's Chromium (headless, via playwright-core):
// the operations are listed, GET /products → "Try it out" → "Execute" shows a live 200 answer
// with the products. Saves a full-page screenshot. Fails when any request leaves 127.0.0.1 (the UI
// must be served offline, no CDN).
//
//   node scripts/e2e/swagger-ui.mjs <gateway base URL> <screenshot.png>
//   e.g. node scripts/e2e/swagger-ui.mjs http://127.0.0.1:3000 target/e2e/swagger-ui.png
//
// Exit code 0 when every check passed, 1 with a message naming the failed step otherwise.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const STEP_TIMEOUT_MS = 20_000;
const WHOLE_RUN_TIMEOUT_MS = 120_000;
const EXPECTED_OPERATIONS = [
    ["get", "/products"],
    ["get", "/products/{id}"],
    ["post", "/orders"],
    ["get", "/orders/{id}"],
    ["post", "/payments"],
    ["post", "/users/register"],
    ["post", "/users/login"],
    ["get", "/users/me"],
];

const [baseArg, screenshotArg] = process.argv.slice(2);
if (!baseArg || !screenshotArg) {
    console.error("usage: node swagger-ui.mjs <gateway base URL> <screenshot.png>");
    process.exit(2);
}
const base = new URL(baseArg);
const screenshot = resolve(screenshotArg);

function fail(message) {
    console.error(`swagger-ui: FAILED: ${message}`);
    process.exitCode = 1;
}

// Only the gateway's own host may be contacted (data: and blob: URLs never leave the page).
const ALLOWED_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]", base.hostname]);
function leavesLocalhost(url) {
    const parsed = new URL(url);
    if (parsed.protocol === "data:" || parsed.protocol === "blob:" || parsed.protocol === "about:") return false;
    return !ALLOWED_HOSTS.has(parsed.hostname);
}

const watchdog = setTimeout(() => {
    console.error(`swagger-ui: FAILED: the whole run took longer than ${WHOLE_RUN_TIMEOUT_MS / 1000} s`);
    process.exit(1);
}, WHOLE_RUN_TIMEOUT_MS);

const profile = mkdtempSync(join(tmpdir(), "swagger-ui-chromium-"));
let context;
let step = "launching Chromium";
const outside = [];
const pageErrors = [];
try {
    context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
        viewport: { width: 1280, height: 900 },
    });
    context.setDefaultTimeout(STEP_TIMEOUT_MS);
    // Record (and block) anything that would leave this machine: a CDN-served UI fails here.
    await context.route("**/*", (route) => {
        const url = route.request().url();
        if (leavesLocalhost(url)) {
            outside.push(url);
            return route.abort("blockedbyclient");
        }
        return route.continue();
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.on("request", (request) => {
        if (leavesLocalhost(request.url()) && !outside.includes(request.url())) outside.push(request.url());
    });
    page.on("pageerror", (error) => pageErrors.push(String(error)));

    step = `opening ${new URL("/docs", base)}`;
    const response = await page.goto(new URL("/docs", base).toString(), { waitUntil: "load" });
    if (!response || !response.ok()) throw new Error(`GET /docs answered ${response ? response.status() : "nothing"}`);

    step = "waiting for Swagger UI to render the API";
    await page.locator(".swagger-ui .information-container .title").waitFor();
    const title = (await page.locator(".swagger-ui .information-container .title").innerText()).trim();
    console.log(`swagger-ui: title: ${title.split("\n")[0]}`);

    const operation = (method, path) =>
        page.locator(`.opblock.opblock-${method}`).filter({
            has: page.locator(`.opblock-summary-path[data-path="${path}"]`),
        });
    for (const [method, path] of EXPECTED_OPERATIONS) {
        step = `finding ${method.toUpperCase()} ${path} in the list of operations`;
        await operation(method, path).first().waitFor({ state: "visible" });
    }
    console.log(`swagger-ui: ${EXPECTED_OPERATIONS.length} operations listed: ${EXPECTED_OPERATIONS.map(([m, p]) => `${m.toUpperCase()} ${p}`).join(", ")}`);

    const products = operation("get", "/products").first();
    step = "expanding GET /products";
    await products.locator(".opblock-summary").first().click();
    step = 'clicking "Try it out" on GET /products';
    await products.getByRole("button", { name: "Try it out" }).click();
    step = 'clicking "Execute" on GET /products';
    const answer = page.waitForResponse(
        (r) => new URL(r.url()).pathname === "/products" && r.request().method() === "GET",
    );
    await products.getByRole("button", { name: "Execute" }).click();
    step = "waiting for the GET /products call the UI makes";
    const live = await answer;
    if (live.status() !== 200) throw new Error(`the UI's GET /products answered ${live.status()}`);

    step = "waiting for the live response section to show 200";
    const liveResponse = products.locator(".live-responses-table .response").first();
    await liveResponse.waitFor({ state: "visible" });
    const status = (await liveResponse.locator(".response-col_status").innerText()).trim();
    if (status !== "200") throw new Error(`the live response shows status ${JSON.stringify(status)}, wanted 200`);
    step = 'checking the live response body contains "products"';
    const body = await liveResponse.locator(".response-col_description pre").first().innerText();
    if (!body.includes('"products"')) throw new Error(`the live response body has no "products": ${body.slice(0, 300)}`);
    const requestUrl = await products.locator(".request-url pre").first().innerText().catch(() => "");
    console.log(`swagger-ui: executed GET /products from the UI: ${requestUrl.trim()} → ${status}, ${body.length} characters of body`);

    step = `saving the screenshot to ${screenshot}`;
    mkdirSync(dirname(screenshot), { recursive: true });
    await liveResponse.scrollIntoViewIfNeeded();
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`swagger-ui: screenshot: ${screenshot}`);

    if (pageErrors.length) fail(`the page threw: ${pageErrors.join("; ")}`);
} catch (error) {
    fail(`${step}: ${error instanceof Error ? error.message.split("\n")[0] : error}`);
} finally {
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
    clearTimeout(watchdog);
}
if (outside.length) fail(`requests left 127.0.0.1 (the UI must be served offline): ${[...new Set(outside)].join(", ")}`);
if (!process.exitCode) console.log("swagger-ui: ok");
