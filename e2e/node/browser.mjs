// Headless Chromium for the end-to-end suite: drives pages the way a person would (sign-in
// forms, redirects through the identity provider, cookies) and reports what happened as JSON.
// Debian's /usr/bin/chromium (E2E_CHROMIUM to override) through playwright-core; playwright
// never downloads a browser here. Every launch gets a fresh temporary profile (user data dir).
//
//   node e2e/node/browser.mjs '<json>'          one run: the JSON on argv (or on stdin when
//   node e2e/node/browser.mjs < run.json        there is no argument); prints one JSON result
//   node e2e/node/browser.mjs --serve           one browser, one context, many runs: a JSON
//                                               request per stdin line, a JSON line answers each
//
// A run is {"steps": [...], "name"?: "prefix", "autoScreenshot"?: bool, "timeout"?: ms,
// "state"?: "file"} (the last three at the start of the process only when serving). `state` is a
// Playwright storage-state file: loaded when it exists, written after the run, so that a later
// process continues with the same cookies (session cookies included).
//
// Steps (one key names the action; `screenshot: "name"` on any step also takes a screenshot after
// it; `timeout` per step in ms, default 15000):
//   {"goto": url, "waitUntil"?: "load"|"domcontentloaded"|"commit"}
//   {"click": selector | {"text": "Sign out"} | {"role": "button", "name": "Sign in"}}
//   {"fill": selector, "value": "..."}
//   {"submit": form-selector, "fields"?: {"name": "value" | null}}
//        submits a form as its submit button would; `fields` first sets (or adds as hidden
//        inputs) the named fields, null removes them (CSRF tests)
//   {"login": "alice" | {"user": "alice", "password": "password"}}
//        the example provider's sign-in page (examples/oidc-provider): fills input[name=login]
//        and input[name=password], clicks button[type=submit] and waits for where it leads
//   {"waitForURL": url | {"equals"|"prefix"|"regex": "..."}}
//   {"waitFor": selector, "state"?: "visible"|"attached"|"hidden"|"detached"}
//   {"screenshot": "name"}   PNG `<run name>-<name>.png` under the artifacts directory
//                            ($E2E_ARTIFACTS, default e2e/artifacts/); an absolute path is used
//                            as it is
//   {"text": selector?}      innerText of the element (default body)
//   {"query": selector}      [{tag, attributes, text, value}] of every match
//   {"evaluate": "js expression"}  its JSON value
//   {"cookies": url | [url...]}    the context's cookies for those URLs (all when empty)
//   {"addCookies": [{name, value, url} ...]}  {"clearCookies": true}
//
// Every step that may navigate waits until the page settles: the load event, then no new
// main-frame navigation for a moment (auto-submitted forms, redirect chains). A step's result:
// {i, action, ok, error?, url, status, navigations: [{url, method, status, location, headers,
// setCookies}] (main-frame responses during the step, redirects included), plus its output}.
// The run's result: {ok, error?, url, status (last main-frame response), headers (of that
// response, lower-case names, repeated ones joined by "\n"), title, text (body innerText), body
// (that response's text, up to 256 KiB, when there is one), navigations (all of the run),
// cookies (every cookie in the context: name, value, domain, path, expires, httpOnly, secure,
// sameSite), screenshots, steps}. One-shot mode exits 1 when a step failed (after a screenshot
// `<name>-failed.png`), 2 on bad input.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.resolve(process.env.E2E_ARTIFACTS || path.join(HERE, '..', 'artifacts'));
const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const STEP_TIMEOUT = 15000;
const QUIET_MS = 300;
const BODY_LIMIT = 256 * 1024;
const NAVIGATING = new Set(['goto', 'click', 'submit', 'login']);

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

function withTimeout(promise, ms, fallback) {
  return Promise.race([promise, sleep(ms).then(() => fallback)]);
}

class Session {
  constructor(browser, context, page, opts) {
    this.browser = browser;
    this.context = context;
    this.page = page;
    this.name = opts.name || 'browser';
    this.prefix = Boolean(opts.name); // screenshot names get the run's name in front
    this.autoScreenshot = Boolean(opts.autoScreenshot);
    this.timeout = opts.timeout || STEP_TIMEOUT;
    this.shots = 0;
    this.navLog = []; // every main-frame response, in order
    this.lastResponse = null;
    this.lastError = null; // {url, error} when the last main-frame navigation failed
    this.inflight = new Set(); // main-frame navigation requests not finished yet
    this.navRequests = 0;
    const main = (req) => req.isNavigationRequest() && req.frame() === page.mainFrame();
    page.on('request', (req) => {
      if (!main(req)) return;
      this.inflight.add(req);
      this.navRequests += 1;
    });
    const done = (req) => this.inflight.delete(req);
    page.on('requestfinished', done);
    page.on('requestfailed', (req) => {
      if (main(req)) {
        const error = req.failure()?.errorText || 'failed';
        this.navLog.push({ url: req.url(), method: req.method(), error });
        // net::ERR_ABORTED: replaced by another navigation (or a download), not a failed load
        if (error !== 'net::ERR_ABORTED') {
          this.lastResponse = null;
          this.lastError = { url: req.url(), error };
        }
      }
      done(req);
    });
    page.on('response', (resp) => {
      if (!main(resp.request())) return;
      this.navLog.push({ response: resp });
      this.lastResponse = resp;
      this.lastError = null;
    });
  }

  static async open(opts = {}) {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      timeout: 60000,
    });
    const contextOpts = { ignoreHTTPSErrors: Boolean(opts.ignoreHTTPSErrors) };
    if (opts.state && fs.existsSync(opts.state)) contextOpts.storageState = opts.state;
    const context = await browser.newContext(contextOpts);
    const page = await context.newPage();
    return new Session(browser, context, page, opts);
  }

  async close() {
    await this.browser.close().catch(() => {});
  }

  // Wait for the page to settle: load, then QUIET_MS without a new main-frame navigation.
  async settle(timeout) {
    const deadline = Date.now() + timeout;
    const left = () => Math.max(1, deadline - Date.now());
    for (;;) {
      while (this.inflight.size > 0) {
        if (Date.now() > deadline) throw new Error(`navigation to ${[...this.inflight][0].url()} did not finish in ${timeout} ms`);
        await sleep(25);
      }
      await this.page.waitForLoadState('load', { timeout: left() });
      const seen = this.navRequests;
      await sleep(QUIET_MS);
      if (this.navRequests === seen && this.inflight.size === 0) return;
      if (Date.now() > deadline) throw new Error(`the page kept navigating for ${timeout} ms`);
    }
  }

  locator(target) {
    if (typeof target === 'string') return this.page.locator(target).first();
    if (target && target.text !== undefined) return this.page.getByText(target.text, { exact: target.exact ?? true }).first();
    if (target && target.role) return this.page.getByRole(target.role, { name: target.name, exact: true }).first();
    throw new Error(`not a selector: ${JSON.stringify(target)}`);
  }

  async screenshot(name) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const base = this.prefix && !name.startsWith(`${this.name}-`) ? `${this.name}-${name}` : name;
    const file = path.isAbsolute(name) ? name
      : path.join(ARTIFACTS, `${base.replace(/[^A-Za-z0-9_.-]+/g, '_')}${base.endsWith('.png') ? '' : '.png'}`);
    await this.page.screenshot({ path: file, fullPage: true, timeout: 10000 });
    return file;
  }

  async step(step) {
    const action = ['goto', 'click', 'fill', 'submit', 'login', 'waitForURL', 'waitFor', 'screenshot', 'text',
      'query', 'evaluate', 'cookies', 'addCookies', 'clearCookies'].find((k) => k in step);
    if (!action) throw Object.assign(new Error(`unknown step ${JSON.stringify(step)}`), { badInput: true });
    const timeout = step.timeout || this.timeout;
    const { page } = this;
    const out = {};
    switch (action) {
      case 'goto':
        await page.goto(step.goto, { waitUntil: step.waitUntil || 'load', timeout });
        break;
      case 'click':
        await this.locator(step.click).click({ timeout });
        break;
      case 'fill':
        await this.locator(step.fill).fill(String(step.value ?? ''), { timeout });
        break;
      case 'submit': {
        const form = this.locator(step.submit);
        await form.waitFor({ state: 'attached', timeout });
        await form.evaluate((f, fields) => {
          for (const [name, value] of Object.entries(fields || {})) {
            const existing = [...f.elements].filter((e) => e.name === name);
            if (value === null) {
              existing.forEach((e) => e.remove());
            } else if (existing.length) {
              existing.forEach((e) => { e.value = value; });
            } else {
              const input = document.createElement('input');
              input.type = 'hidden';
              input.name = name;
              input.value = value;
              f.appendChild(input);
            }
          }
          // requestSubmit runs validation and sends the default button's name/value, like a click;
          // plain submit() for forms that have no button at all.
          const button = f.querySelector('button[type=submit], button:not([type]), input[type=submit]');
          if (button) f.requestSubmit(button); else f.submit();
        }, step.fields || {});
        break;
      }
      case 'login': {
        const creds = typeof step.login === 'string' ? { user: step.login } : step.login;
        await page.locator('input[name="login"]').fill(creds.user, { timeout });
        await page.locator('input[name="password"]').fill(creds.password ?? 'password', { timeout });
        await page.locator('#login-form button[type="submit"], form button[type="submit"]').first().click({ timeout });
        break;
      }
      case 'waitForURL': {
        const want = typeof step.waitForURL === 'string' ? { equals: step.waitForURL } : step.waitForURL;
        const re = want.regex !== undefined ? new RegExp(want.regex) : null;
        const match = (u) => {
          const s = u.toString();
          if (want.equals !== undefined) return s === want.equals;
          if (want.prefix !== undefined) return s.startsWith(want.prefix);
          return re.test(s);
        };
        await page.waitForURL(match, { timeout, waitUntil: 'load' });
        break;
      }
      case 'waitFor':
        await this.locator(step.waitFor).waitFor({ state: step.state || 'visible', timeout });
        break;
      case 'screenshot':
        break; // taken below
      case 'text':
        out.text = await this.locator(step.text || 'body').innerText({ timeout });
        break;
      case 'query':
        out.elements = await page.locator(step.query).evaluateAll((els) => els.map((e) => ({
          tag: e.tagName.toLowerCase(),
          attributes: Object.fromEntries([...e.attributes].map((a) => [a.name, a.value])),
          text: e.innerText ?? e.textContent,
          value: 'value' in e ? e.value : undefined,
        })));
        break;
      case 'evaluate':
        out.value = await page.evaluate(step.evaluate);
        break;
      case 'cookies': {
        const urls = step.cookies ? [].concat(step.cookies) : [];
        out.cookies = await this.context.cookies(urls);
        break;
      }
      case 'addCookies':
        await this.context.addCookies(step.addCookies);
        break;
      case 'clearCookies':
        await this.context.clearCookies();
        break;
      default:
        break;
    }
    if (NAVIGATING.has(action)) await this.settle(timeout);
    const shot = action === 'screenshot' ? step.screenshot : step.screenshot || (this.autoScreenshot && NAVIGATING.has(action)
      ? `${this.name}-${String(++this.shots).padStart(2, '0')}-${action}` : null);
    if (shot) out.screenshot = await this.screenshot(shot);
    return { action, out };
  }

  async describe(entries) {
    return Promise.all(entries.map(async (e) => {
      if (!e.response) return e;
      const r = e.response;
      const raw = await withTimeout(r.headersArray(), 2000, null)
        || Object.entries(r.headers()).map(([name, value]) => ({ name, value }));
      const headers = {};
      for (const { name, value } of raw) {
        const k = name.toLowerCase();
        headers[k] = k in headers ? `${headers[k]}\n${value}` : value;
      }
      return {
        url: r.url(),
        method: r.request().method(),
        status: r.status(),
        location: headers.location,
        headers,
        setCookies: raw.filter((h) => h.name.toLowerCase() === 'set-cookie').map((h) => h.value),
      };
    }));
  }

  async run(steps) {
    const result = { ok: true, steps: [], screenshots: [] };
    for (const [i, step] of steps.entries()) {
      const before = this.navLog.length;
      const entry = { i, ok: true };
      try {
        const { action, out } = await this.step(step);
        Object.assign(entry, { action }, out);
        if (out.screenshot) result.screenshots.push(out.screenshot);
      } catch (err) {
        if (err.badInput) throw err;
        Object.assign(entry, { action: Object.keys(step)[0], ok: false, error: String(err.message || err).split('\n')[0] });
        result.ok = false;
        result.error = `step ${i} (${JSON.stringify(step).slice(0, 200)}): ${entry.error}`;
        try {
          result.screenshots.push(await this.screenshot(`${this.name}-failed-${i}`));
        } catch { /* the page may be gone */ }
      }
      entry.navigations = await this.describe(this.navLog.slice(before));
      entry.url = this.page.url();
      entry.status = this.lastResponse ? this.lastResponse.status() : null;
      result.steps.push(entry);
      if (!entry.ok) break;
    }
    result.navigations = result.steps.flatMap((s) => s.navigations);
    await this.summarize(result);
    return result;
  }

  async summarize(result) {
    const { page } = this;
    result.url = page.url();
    result.status = this.lastResponse ? this.lastResponse.status() : null;
    result.navigationError = this.lastError;
    const [last] = this.lastResponse ? await this.describe([{ response: this.lastResponse }]) : [null];
    result.headers = last ? last.headers : {};
    result.title = await withTimeout(page.title(), 3000, '');
    result.text = await withTimeout(page.evaluate(() => (document.body ? document.body.innerText : '')), 3000, '');
    result.body = null;
    if (this.lastResponse && !(this.lastResponse.status() >= 300 && this.lastResponse.status() < 400)) {
      const text = await withTimeout(this.lastResponse.text().catch(() => null), 3000, null);
      result.body = text === null ? null : text.slice(0, BODY_LIMIT);
    }
    result.cookies = await this.context.cookies();
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function parse(text) {
  const req = JSON.parse(text);
  if (Array.isArray(req)) return { steps: req };
  if (!req || !Array.isArray(req.steps)) throw new Error('expected {"steps": [...]} or a list of steps');
  return req;
}

async function oneShot(text) {
  let req;
  try {
    req = parse(text);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: `bad input: ${err.message}` })}\n`);
    return 2;
  }
  const session = await Session.open(req);
  try {
    const result = await session.run(req.steps);
    if (req.state) await session.context.storageState({ path: req.state });
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return result.ok ? 0 : 1;
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: String(err.message || err) })}\n`);
    return 2;
  } finally {
    await session.close();
  }
}

async function serve(opts) {
  const session = await Session.open(opts);
  process.stdout.write(`${JSON.stringify({ ok: true, ready: true, version: session.browser.version() })}\n`);
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let answer;
    try {
      const req = JSON.parse(line);
      if (req.close) break;
      answer = await session.run(parse(line).steps);
      if (opts.state) await session.context.storageState({ path: opts.state });
    } catch (err) {
      answer = { ok: false, error: String(err.message || err) };
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  }
  await session.close();
  return 0;
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === '--serve') {
    const opts = argv[1] ? JSON.parse(argv[1]) : {};
    return serve(opts);
  }
  return oneShot(argv.length ? argv.join(' ') : await readStdin());
}

main().then((code) => { process.exitCode = code; }, (err) => {
  process.stderr.write(`browser.mjs: ${err.stack || err}\n`);
  process.exitCode = 2;
});
