// A small OpenID Connect provider for signing people in to Portcullis under `portcullis dev`,
// built on panva's certified `oidc-provider`. The e2e suite starts the same script
// (e2e/idp.py). Development only: keys, sessions and grants live in memory and vanish on exit.
//
//   npm ci && node provider.mjs          # then see README.md for the Portcullis settings
//
// Settings (environment; every one also as a flag, e.g. --port 0 --issuer http://...):
//   PORT                       listen port on HOST (default 9400; 0 = pick a free one)
//   HOST                       listen address (default 127.0.0.1)
//   ISSUER                     issuer URL (default http://127.0.0.1:<port>)
//   CLIENT_ID                  default portcullis-dev
//   CLIENT_SECRET              default portcullis-dev-secret (client_secret_basic)
//   REDIRECT_URIS              comma list, default http://localhost:8080/oauth2/callback
//   POST_LOGOUT_REDIRECT_URIS  comma list, default http://localhost:8080/.portcullis/signed_out
//   ID_TOKEN_TTL               seconds, default 3600
//   ACCESS_TOKEN_TTL           seconds, default 3600
//   REFRESH_TOKEN_TTL          seconds, default 86400
//   EXTRA_CLIENTS              JSON list of more clients, default none: [{"client_id", "client_secret",
//                              "redirect_uris": [...], "post_logout_redirect_uris": [...] (optional),
//                              "id_token_ttl": seconds (optional, else ID_TOKEN_TTL)}]; each is a
//                              confidential client like the first (code + refresh_token,
//                              client_secret_basic, PKCE S256), e.g. a command-line tool whose
//                              id_tokens Portcullis accepts through idp.allowedAudiences
//
// When it accepts connections it prints exactly one line on stdout, `listening <issuer>`; every
// other message goes to stderr.
//
// Users (password `password` for both; any other login or password is refused):
//   alice  sub alice, alice@example.com (verified), name "Alice Example", groups [payments, eng]
//   bob    sub bob, bob@other.example (verified), no name, groups []
//
// Pages (the flow the e2e browser harness drives, e2e/node/browser.mjs `login` step):
//   GET  /interaction/<uid>         sign-in form: input[name=login], input[name=password],
//                                   button[type=submit] "Sign in" (#submit), and a separate
//                                   "Cancel" form (#cancel) that ends the request with access_denied
//   POST /interaction/<uid>/login   good credentials: 303 back to the authorization endpoint, which
//                                   redirects to the client with a code; bad ones: the form again,
//                                   HTTP 401, with "Invalid login or password." (#error)
//   GET  /session/end               (end_session_endpoint) with a valid id_token_hint: signs out
//                                   without asking (an auto-submitted form) and redirects to the
//                                   registered post_logout_redirect_uri; without one: a page with
//                                   "Yes, sign me out" (button[name=logout][value=yes]) and
//                                   "No, stay signed in"
// Consent is never asked: every client is first-party, so every sign-in gets a grant for the
// scopes it asked for (openid email profile groups) and a refresh token (no offline_access needed).

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

// oidc-provider writes its notices with console.info/log; keep stdout for the `listening` line.
console.log = console.error;
console.info = console.error;

const FLAGS = {
  port: 'PORT',
  host: 'HOST',
  issuer: 'ISSUER',
  'client-id': 'CLIENT_ID',
  'client-secret': 'CLIENT_SECRET',
  'redirect-uris': 'REDIRECT_URIS',
  'post-logout-redirect-uris': 'POST_LOGOUT_REDIRECT_URIS',
  'id-token-ttl': 'ID_TOKEN_TTL',
  'access-token-ttl': 'ACCESS_TOKEN_TTL',
  'refresh-token-ttl': 'REFRESH_TOKEN_TTL',
  'extra-clients': 'EXTRA_CLIENTS',
};

function settings() {
  const { values } = parseArgs({
    options: Object.fromEntries(Object.keys(FLAGS).map((name) => [name, { type: 'string' }])),
    strict: true,
  });
  const get = (flag, fallback) => values[flag] ?? process.env[FLAGS[flag]] ?? fallback;
  const list = (flag, fallback) => get(flag, fallback).split(',').map((s) => s.trim()).filter(Boolean);
  const seconds = (flag, fallback) => {
    const raw = get(flag, String(fallback));
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${FLAGS[flag]} must be a positive number of seconds, got ${JSON.stringify(raw)}`);
    return n;
  };
  const port = Number(get('port', '9400'));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT must be 0 to 65535, got ${get('port')}`);
  return {
    port,
    host: get('host', '127.0.0.1'),
    issuer: get('issuer', ''),
    clientId: get('client-id', 'portcullis-dev'),
    clientSecret: get('client-secret', 'portcullis-dev-secret'),
    redirectUris: list('redirect-uris', 'http://localhost:8080/oauth2/callback'),
    postLogoutRedirectUris: list('post-logout-redirect-uris', 'http://localhost:8080/.portcullis/signed_out'),
    idTokenTTL: seconds('id-token-ttl', 3600),
    accessTokenTTL: seconds('access-token-ttl', 3600),
    refreshTokenTTL: seconds('refresh-token-ttl', 86400),
    extraClients: extraClients(get('extra-clients', '[]')),
  };
}

// EXTRA_CLIENTS: a JSON list of {client_id, client_secret, redirect_uris, post_logout_redirect_uris?,
// id_token_ttl?}.
function extraClients(raw) {
  let list;
  try {
    list = JSON.parse(raw);
  } catch (err) {
    throw new Error(`EXTRA_CLIENTS must be a JSON list: ${err.message}`);
  }
  if (!Array.isArray(list)) throw new Error('EXTRA_CLIENTS must be a JSON list of clients');
  return list.map((c, i) => {
    const where = `EXTRA_CLIENTS[${i}]`;
    if (typeof c !== 'object' || c === null) throw new Error(`${where} must be an object`);
    for (const key of ['client_id', 'client_secret']) {
      if (typeof c[key] !== 'string' || !c[key]) throw new Error(`${where}.${key} must be a non-empty string`);
    }
    const uris = (key) => {
      const v = c[key] ?? [];
      if (!Array.isArray(v) || !v.every((u) => typeof u === 'string')) throw new Error(`${where}.${key} must be a list of URLs`);
      return v;
    };
    const ttl = c.id_token_ttl;
    if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < 1)) throw new Error(`${where}.id_token_ttl must be a positive number of seconds`);
    return {
      clientId: c.client_id,
      clientSecret: c.client_secret,
      redirectUris: uris('redirect_uris'),
      postLogoutRedirectUris: uris('post_logout_redirect_uris'),
      idTokenTTL: ttl,
    };
  });
}

// The test users. Passwords are compared in constant time, though it hardly matters here.
const PASSWORD = 'password';
const USERS = {
  alice: {
    email: 'alice@example.com', email_verified: true, name: 'Alice Example', groups: ['payments', 'eng'],
  },
  bob: {
    email: 'bob@other.example', email_verified: true, groups: [],
  },
};

function checkPassword(login, password) {
  const want = Buffer.from(PASSWORD);
  const got = Buffer.from(String(password ?? ''));
  const same = got.length === want.length && crypto.timingSafeEqual(got, want);
  return Object.hasOwn(USERS, login) && same;
}

function account(sub) {
  if (!Object.hasOwn(USERS, sub)) return undefined;
  return {
    accountId: sub,
    // oidc-provider filters these by the granted scopes (claims config below).
    async claims() {
      return { sub, ...USERS[sub] };
    },
  };
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>${esc(title)}</title>
  <style>
    body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem}
    label{display:block;margin:.6rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}
    button{margin-top:1rem;padding:.4rem 1rem}.error{color:#b00020}.muted{color:#666;font-size:.9em}
  </style>
</head>
<body>
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`;
}

function loginPage({ uid, clientId, login = '', error = '' }) {
  return page('Sign in', `
<p class="muted">to continue to <strong>${esc(clientId)}</strong> (example provider; users alice and bob)</p>
${error ? `<p class="error" id="error" role="alert">${esc(error)}</p>` : ''}
<form id="login-form" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label for="login">Username</label>
  <input id="login" name="login" type="text" required autofocus value="${esc(login)}">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" required>
  <button id="submit" type="submit">Sign in</button>
</form>
<form id="cancel-form" method="post" action="/interaction/${esc(uid)}/abort">
  <button id="cancel" type="submit">Cancel</button>
</form>`);
}

async function readForm(req, limit = 16 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'x-frame-options': 'DENY',
    'content-security-policy': "frame-ancestors 'none'",
  });
  res.end(html);
}

// The interaction pages; everything else is oidc-provider's.
async function interactions(provider, req, res) {
  const url = new URL(req.url, 'http://x');
  const m = url.pathname.match(/^\/interaction\/([A-Za-z0-9_-]+)(\/login|\/abort)?$/);
  if (!m) return false;
  const [, uid, action] = m;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch {
    send(res, 400, page('Sign-in expired', '<p id="error">This sign-in request is unknown or has expired. Start again from the application.</p>'));
    return true;
  }
  if (details.uid !== uid) {
    send(res, 400, page('Sign-in expired', '<p id="error">This sign-in request does not match this browser.</p>'));
    return true;
  }
  const clientId = details.params.client_id;
  if (!action && req.method === 'GET') {
    send(res, 200, loginPage({ uid, clientId, login: details.params.login_hint || '' }));
    return true;
  }
  if (req.method !== 'POST' || !action) {
    res.writeHead(405, { allow: action ? 'POST' : 'GET' }).end();
    return true;
  }
  if (action === '/abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'the user cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
    return true;
  }
  const form = await readForm(req);
  const login = form.get('login') || '';
  if (details.prompt.name !== 'login' || !checkPassword(login, form.get('password'))) {
    console.error(`sign-in refused for ${JSON.stringify(login)}`);
    send(res, 401, loginPage({ uid, clientId, login, error: 'Invalid login or password.' }));
    return true;
  }
  console.error(`signed in ${login}`);
  await provider.interactionFinished(req, res, {
    login: { accountId: login, amr: ['pwd'] },
  }, { mergeWithLastSubmission: false });
  return true;
}

function configuration(s) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };
  const client = (c, name) => ({
    client_id: c.clientId,
    client_secret: c.clientSecret,
    client_name: name,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: c.redirectUris,
    post_logout_redirect_uris: c.postLogoutRedirectUris,
  });
  const idTokenTTLs = new Map(s.extraClients.filter((c) => c.idTokenTTL).map((c) => [c.clientId, c.idTokenTTL]));
  return {
    clients: [client(s, 'Portcullis'), ...s.extraClients.map((c) => client(c, c.clientId))],
    jwks: { keys: [jwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    // Scope-requested claims go into the id_token as well, not only to userinfo: relying parties
    // such as Portcullis read email and groups from the id_token.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    findAccount: (_ctx, sub) => account(sub),
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    // First-party client: grant whatever it asks for, so no consent page.
    async loadExistingGrant(ctx) {
      const { client, session, params } = ctx.oidc;
      const existing = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
      const grant = existing ? await ctx.oidc.provider.Grant.find(existing)
        : new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
      if (!grant) return undefined;
      grant.addOIDCScope(String(params.scope || 'openid'));
      await grant.save();
      return grant;
    },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: {
      AccessToken: s.accessTokenTTL,
      IdToken: (_ctx, _token, c) => idTokenTTLs.get(c?.clientId) ?? s.idTokenTTL,
      RefreshToken: s.refreshTokenTTL,
      AuthorizationCode: 60,
      Interaction: 3600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          // A relying party that presents a valid id_token_hint signs out without a question.
          const auto = Boolean(ctx.oidc.entities.IdTokenHint);
          const withYes = form.replace('</form>', '<input type="hidden" name="logout" value="yes"></form>');
          ctx.type = 'html';
          ctx.set('x-frame-options', 'DENY');
          ctx.body = page('Sign out', `
<p>Sign out of the example provider${ctx.oidc.client ? ` and ${esc(ctx.oidc.client.clientName || ctx.oidc.client.clientId)}` : ''}?</p>
${auto ? withYes : form}
<button id="logout-yes" type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button id="logout-no" type="submit" form="op.logoutForm">No, stay signed in</button>
${auto ? '<script>document.getElementById("op.logoutForm").submit()</script>' : ''}`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = page('Signed out', '<p id="signed-out">You are signed out of the example provider.</p>');
        },
      },
      revocation: { enabled: true },
      introspection: { enabled: true },
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Sign-in error', Object.entries(out)
        .map(([k, v]) => `<p><strong>${esc(k)}</strong>: <span id="${esc(k)}">${esc(v)}</span></p>`).join('\n'));
    },
  };
}

async function main() {
  const s = settings();
  let handler = (_req, res) => res.writeHead(503).end();
  const server = http.createServer((req, res) => handler(req, res));
  server.keepAliveTimeout = 5000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(s.port, s.host, resolve);
  });
  const { port } = server.address();
  const issuer = (s.issuer || `http://${s.host.includes(':') ? `[${s.host}]` : s.host}:${port}`).replace(/\/+$/, '');
  const provider = new Provider(issuer, configuration(s));
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  const callback = provider.callback();
  handler = (req, res) => {
    interactions(provider, req, res)
      .then((done) => { if (!done) callback(req, res); })
      .catch((err) => {
        console.error('interaction error', err);
        if (!res.headersSent) send(res, err.status === 413 ? 413 : 500, page('Error', '<p id="error">Something went wrong.</p>'));
        else res.end();
      });
  };
  process.stdout.write(`listening ${issuer}\n`);
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(`provider.mjs: ${err.message}`);
  process.exit(1);
});
