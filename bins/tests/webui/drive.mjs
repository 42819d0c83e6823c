// The people at the browser in bins/tests/web_ui.rs: headless Chromium (Debian's), driven by
// playwright-core, on a phone-sized viewport. One step per run; the last stdout line is a JSON
// report ({"unexpected": ...} on failure). Every wait has a timeout.
//
// Usage: node drive.mjs STEP URL USER PASSWORD SHOTS_DIR [ARG]
//   pin     ARG = the PIN the Moonlight client shows: log in, enter it for the pending pairing
//   pin-page ARG = the PIN; URL = the PIN page link of the server log: follow the page's link to
//           the web UI (HTTPS), log in there, enter the PIN for the pending pairing
//   revoke  try changes without the CSRF token / from another origin, then revoke one's device
//   revoke-ending  revoke one's only device with "Also end its running session" ticked
//   admin   ARG = a PNG file: add an app titled "Web UI App" with it as image, and a user carol
//           with a password
//   sso-pin ARG = the PIN: log in with single sign-on (the provider's own forms, USER and
//           PASSWORD typed there; the page then names USER), enter the PIN for the pending pairing
//   proxy-pin ARG = the PIN: every request carries `X-Forwarded-User: USER`, as an
//           authenticating reverse proxy adds it; the page opens logged in as the user it names
//           (PASSWORD unused), enter the PIN for the pending pairing, then log out: the page
//           goes to the proxy's sign-out address (reported as signed_out_at)
import { chromium } from "playwright-core";
import path from "node:path";

const [step, url, user, password, shots, arg] = process.argv.slice(2);
const WAIT_MS = 20000;
const CAROL_PASSWORD = "carol was added in the browser";
const report = { step, screenshots: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
  timeout: WAIT_MS,
});
const context = await browser.newContext({
  viewport: { width: 375, height: 812 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  ignoreHTTPSErrors: true,
  ...(step === "proxy-pin" ? { extraHTTPHeaders: { "X-Forwarded-User": user } } : {}),
});
context.setDefaultTimeout(WAIT_MS);
const page = await context.newPage();

async function shot(name) {
  const file = path.join(shots, `${step}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: WAIT_MS });
  report.screenshots.push(file);
  console.error(`screenshot: ${file}`);
}

async function login() {
  await page.goto(url, { timeout: WAIT_MS });
  await logIn();
}

async function viaPinPage() {
  await page.goto(url, { timeout: WAIT_MS });
  const link = page.getByRole("link", { name: "Enter the PIN in the web UI", exact: true });
  await link.waitFor();
  report.web_ui_link = await link.getAttribute("href");
  await shot("pin-page");
  await link.click();
  await page.waitForURL(report.web_ui_link, { timeout: WAIT_MS });
  await logIn();
}

async function logIn() {
  await page.getByLabel("User name", { exact: true }).fill(user);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await shot("login");
  await page.getByRole("button", { name: "Log in", exact: true }).click();
  await page.getByText(`Logged in as ${user}`).waitFor();
  // Usable at 375 px: nothing wider than the screen.
  report.page_width = await page.evaluate(() => document.documentElement.scrollWidth);
}

async function singleSignOn() {
  await page.goto(url, { timeout: WAIT_MS });
  const link = page.getByRole("link", { name: "Log in with single sign-on", exact: true });
  await link.waitFor();
  await shot("sso-offered");
  await link.click();
  // The provider's login form, then its consent form; back at the web UI after that.
  for (let form = 0; form < 4 && !page.url().startsWith(url); form += 1) {
    await page.locator('button[type="submit"]').first().waitFor();
    if (form === 0) await shot("sso-provider");
    for (const [name, value] of [["login", user], ["password", password]]) {
      const input = page.locator(`input[name="${name}"]`);
      if (await input.count()) await input.fill(value);
    }
    const before = page.url();
    await page.locator('button[type="submit"]').first().click();
    await page.waitForURL((u) => u.toString() !== before, { timeout: WAIT_MS });
  }
  report.back_at = page.url();
  await page.getByText(/^Logged in as /).waitFor();
  report.logged_in = await page.locator("#who").textContent();
  report.page_width = await page.evaluate(() => document.documentElement.scrollWidth);
}

async function viaProxy() {
  await page.goto(url, { timeout: WAIT_MS });
  await page.getByText(/^Logged in as /).waitFor();
  report.logged_in = await page.locator("#who").textContent();
  report.page_width = await page.evaluate(() => document.documentElement.scrollWidth);
}

async function enterPin() {
  const pin = page.getByLabel(/^PIN for /);
  await pin.waitFor();
  await shot("pending");
  await pin.fill(arg);
  await page.getByRole("button", { name: "Pair", exact: true }).click();
  await page.getByRole("status").getByText("PIN sent").waitFor();
  await shot("pin-sent");
}

try {
  const logins = { "sso-pin": singleSignOn, "proxy-pin": viaProxy, "pin-page": viaPinPage };
  await (logins[step] || login)();
  if (["pin", "pin-page", "sso-pin", "proxy-pin"].includes(step)) {
    await enterPin();
    if (step === "proxy-pin") {
      await page.getByRole("button", { name: "Log out", exact: true }).click();
      await page.waitForURL("**/oauth2/sign_out", { waitUntil: "commit", timeout: WAIT_MS });
      report.signed_out_at = page.url();
    }
  } else if (step === "revoke") {
    const revoke = page.locator("#devices").getByRole("button", { name: "Revoke" });
    await revoke.waitFor();
    await shot("devices");
    const { fingerprint, csrf } = await page.evaluate(async () => {
      const pairings = await (await fetch("/api/v1/pairings")).json();
      const session = await (await fetch("/ui/session")).json();
      return { fingerprint: pairings[0].fingerprint, csrf: session.csrf };
    });
    // A form posted without the CSRF token (the browser sends the cookie and this origin).
    const posted = page.waitForResponse((r) => r.url().endsWith("/api/v1/users"), { timeout: WAIT_MS });
    await page.evaluate(() => {
      const form = document.createElement("form");
      form.method = "post";
      form.action = "/api/v1/users";
      const input = document.createElement("input");
      input.name = "name";
      input.value = "mallory";
      form.append(input);
      document.body.append(form);
      form.submit();
    });
    report.form_without_csrf = (await posted).status();
    await page.waitForURL("**/api/v1/users", { waitUntil: "load", timeout: WAIT_MS });
    // A script deleting the device without the token, and a request from another origin with it.
    await page.goto(url, { timeout: WAIT_MS });
    await page.getByText(`Logged in as ${user}`).waitFor();
    report.fetch_without_csrf = await page.evaluate(
      async (fp) => (await fetch(`/api/v1/pairings/${fp}`, { method: "DELETE" })).status,
      fingerprint,
    );
    const foreign = await context.request.delete(`${url}api/v1/pairings/${fingerprint}`, {
      headers: { Origin: "https://evil.example", "X-CSRF-Token": csrf },
      timeout: WAIT_MS,
    });
    report.other_origin = foreign.status();
    await page.locator("#devices").getByRole("button", { name: "Revoke" }).click();
    await page.locator("#devices").getByText("No paired device.").waitFor();
    await shot("revoked");
  } else if (step === "revoke-ending") {
    const devices = page.locator("#devices");
    await devices.getByRole("button", { name: "Revoke" }).waitFor();
    await page.locator("#my-sessions li:not(.empty)").waitFor();
    report.sessions_before = await page.locator("#my-sessions li").allTextContents();
    await devices.getByLabel("Also end its running session").check();
    await shot("ending");
    await devices.getByRole("button", { name: "Revoke" }).click();
    await page.getByRole("status").getByText("and ended its session.").waitFor();
    await devices.getByText("No paired device.").waitFor();
    await page.locator("#my-sessions").getByText("No running session.").waitFor();
    await shot("ended");
  } else if (step === "admin") {
    await page.getByRole("heading", { name: "Users" }).waitFor();
    await page.getByLabel("App title").fill("Web UI App");
    await page.getByLabel("Image (PNG, optional)").setInputFiles(arg);
    await page.getByRole("button", { name: "Add app" }).click();
    await page.getByRole("status").getByText("Added Web UI App with its image.").waitFor();
    const image = page.locator("#admin-apps li", { hasText: "Web UI App" }).locator("img");
    await image.waitFor();
    await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, await image.elementHandle(), {
      timeout: WAIT_MS,
    });
    await shot("app-added");
    // A user added, given a password, and able to log in with it on the page.
    await page.getByLabel("New user name", { exact: true }).fill("carol");
    await page.getByRole("button", { name: "Add user", exact: true }).click();
    await page.getByRole("status").getByText("Added carol.").waitFor();
    await page.getByLabel("New password for carol", { exact: true }).fill(CAROL_PASSWORD);
    await page
      .locator("#users li", { hasText: "carol" })
      .getByRole("button", { name: "Set password", exact: true })
      .click();
    await page.getByRole("status").getByText("Password set for carol.").waitFor();
    report.users = await page.locator("#users li").allTextContents();
    await shot("user-added");
    await page.getByRole("button", { name: "Log out", exact: true }).click();
    await page.getByRole("status").getByText("Logged out.").waitFor();
    await page.getByLabel("User name", { exact: true }).fill("carol");
    await page.getByLabel("Password", { exact: true }).fill(CAROL_PASSWORD);
    await page.getByRole("button", { name: "Log in", exact: true }).click();
    await page.getByText("Logged in as carol").waitFor();
    await page.locator("#devices").getByText("No paired device.").waitFor();
    report.carol_sees_admin = await page.locator("#admin").isVisible();
    await shot("carol");
  } else {
    throw new Error(`unknown step ${step}`);
  }
  report.ok = true;
} catch (error) {
  report.unexpected = String(error && error.stack ? error.stack : error);
  await shot("failure").catch(() => null);
  process.exitCode = 1;
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
