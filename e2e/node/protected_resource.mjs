// A standard OAuth 2.0 client (openid-client 6) calling a route through Portcullis, as a
// workload would: discovery from the issuer, a client_credentials token, then
// fetchProtectedResource against the route's URL. Run by e2e/test_proxy.py as
//
//   NODE_EXTRA_CA_CERTS=<data-dir>/ca.crt node e2e/node/protected_resource.mjs < request.json
//
// where request.json is {"issuer", "client_id", "client_secret", "scope"?, "url", "method"?,
// "resolve": {"<host>": "<ip>"}}. `resolve` plays the part of /etc/hosts for the route's host
// (`*.localhost` names do not resolve here): the connection goes to that address while the URL,
// the TLS server name and the Host header keep the name. The secret comes on stdin so it never
// shows in a process listing. Prints one JSON object: {"access_token", "status", "headers",
// "body"}; on failure {"error": {"name", "message", "code", "status", "challenges", "body"}} and
// exit code 1.

import https from 'node:https';
import * as client from 'openid-client';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

// A fetch for openid-client's customFetch hook: names listed in `resolve` go through node:https
// with a fixed address (TLS still verifies the name against NODE_EXTRA_CA_CERTS); everything
// else through the built-in fetch.
function resolvingFetch(resolve) {
  return async (url, options = {}) => {
    const target = new URL(url);
    const address = resolve[target.hostname];
    if (!address) return fetch(url, options);
    const headers = {};
    new Headers(options.headers).forEach((value, name) => { headers[name] = value; });
    return new Promise((done, fail) => {
      const req = https.request(target, {
        method: options.method || 'GET',
        headers,
        servername: target.hostname,
        lookup: (_host, opts, cb) => (opts && opts.all
          ? cb(null, [{ address, family: 4 }])
          : cb(null, address, 4)),
      }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const out = new Headers();
          for (let i = 0; i < res.rawHeaders.length; i += 2) {
            out.append(res.rawHeaders[i], res.rawHeaders[i + 1]);
          }
          done(new Response(Buffer.concat(chunks), { status: res.statusCode, headers: out }));
        });
        res.on('error', fail);
      });
      req.on('error', fail);
      if (options.body) req.write(typeof options.body === 'string' ? options.body : Buffer.from(options.body));
      req.end();
    });
  };
}

async function main() {
  const req = await readStdin();
  const config = await client.discovery(
    new URL(req.issuer),
    req.client_id,
    req.client_secret,
    client.ClientSecretBasic(req.client_secret),
  );
  config[client.customFetch] = resolvingFetch(req.resolve || {});
  const tokens = await client.clientCredentialsGrant(config, req.scope ? { scope: req.scope } : {});
  const response = await client.fetchProtectedResource(
    config, tokens.access_token, new URL(req.url), req.method || 'GET',
  );
  const headers = {};
  response.headers.forEach((value, name) => { headers[name] = value; });
  process.stdout.write(JSON.stringify({
    access_token: tokens.access_token,
    status: response.status,
    headers,
    body: await response.text(),
  }) + '\n');
}

// A refused resource request (401/403 with WWW-Authenticate) is a WWWAuthenticateChallengeError:
// the parsed challenges in `cause`, the response in `response`.
async function describe(e) {
  const out = { name: e.name, message: e.message, code: e.code, status: e.status };
  if (Array.isArray(e.cause)) out.challenges = e.cause;
  else if (e.cause instanceof Error) out.cause = await describe(e.cause);
  if (e.response && typeof e.response.clone === 'function') {
    try {
      out.body = await e.response.clone().json();
    } catch {
      // already read, or not JSON
    }
  }
  return out;
}

main().catch(async (err) => {
  process.stdout.write(JSON.stringify({ error: await describe(err) }) + '\n');
  process.exit(1);
});
