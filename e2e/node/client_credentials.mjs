// A standard OAuth 2.0 client (openid-client 6) getting an access token from Portcullis with the
// client_credentials grant, as a workload would: discovery from the issuer, then the token
// request. Run by e2e/test_tokens.py as
//
//   NODE_EXTRA_CA_CERTS=<data-dir>/ca.crt node e2e/node/client_credentials.mjs < request.json
//
// where request.json is {"issuer", "client_id", "client_secret", "auth": "post" | "basic",
// "discovery": "oidc" | "oauth2", "scope"?}. The secret comes on stdin so it never shows in a
// process listing. Prints one JSON object: {"metadata": <discovered server metadata>,
// "tokens": <token response>}; on failure {"error": {"name", "message", "code", "status",
// "error", "error_description", "challenges", "body", "cause"}} and exit code 1.

import * as client from 'openid-client';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function main() {
  const req = await readStdin();
  const auth = req.auth === 'basic'
    ? client.ClientSecretBasic(req.client_secret)
    : client.ClientSecretPost(req.client_secret);
  const config = await client.discovery(
    new URL(req.issuer),
    req.client_id,
    req.client_secret,
    auth,
    { algorithm: req.discovery === 'oauth2' ? 'oauth2' : 'oidc' },
  );
  const parameters = req.scope ? { scope: req.scope } : {};
  const tokens = await client.clientCredentialsGrant(config, parameters);
  process.stdout.write(JSON.stringify({
    metadata: config.serverMetadata(),
    tokens: {
      access_token: tokens.access_token,
      token_type: tokens.token_type,
      expires_in: tokens.expires_in,
      scope: tokens.scope,
      expires_in_helper: tokens.expiresIn(),
    },
  }) + '\n');
}

// openid-client reports a refused token request as ResponseBodyError (`error`,
// `error_description` from the body) or, when the 401 carries `WWW-Authenticate`, as
// WWWAuthenticateChallengeError (the parsed challenges in `cause`, the body unread in `response`).
async function describe(e) {
  if (!e) return e;
  const out = {
    name: e.name,
    message: e.message,
    code: e.code,
    status: e.status,
    error: e.error,
    error_description: e.error_description,
  };
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
