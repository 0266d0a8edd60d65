// One HTTP/2 request with Node's built-in client (no dependencies), for what the suite checks over
// HTTP/2 specifically, such as an early answer to an oversize upload. Run by e2e/test_tokens.py as
//
//   node e2e/node/http2_request.mjs < request.json
//
// where request.json is {"url", "ca" (PEM file), "method", "headers", "body_file"?}. Prints one
// JSON object: {"status", "headers", "body", "rst_code"} (rst_code: the RST_STREAM code the server
// ended the stream with, 0 = NO_ERROR), or {"error": {"code", "message"}} with exit code 1.

import fs from 'node:fs';
import http2 from 'node:http2';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

const fail = (e) => {
  process.stdout.write(JSON.stringify({ error: { code: e.code, message: e.message } }) + '\n');
  process.exit(1);
};

const req = await readStdin();
const url = new URL(req.url);
const body = req.body_file ? fs.readFileSync(req.body_file) : null;
const session = http2.connect(url.origin, { ca: fs.readFileSync(req.ca) });
session.on('error', fail);
const headers = { ':method': req.method, ':path': url.pathname + url.search, ...(req.headers || {}) };
if (body) headers['content-length'] = String(body.length);
const stream = session.request(headers);
let status = null;
let responseHeaders = {};
const chunks = [];
stream.on('response', (h) => {
  status = h[':status'];
  responseHeaders = Object.fromEntries(Object.entries(h).filter(([k]) => !k.startsWith(':')));
});
stream.on('data', (c) => chunks.push(c));
stream.on('error', (e) => {
  // A reset after a complete response is reported on close with its code; anything else fails.
  if (status === null) fail(e);
});
let reported = false;
const report = () => {
  if (reported) return;
  reported = true;
  process.stdout.write(JSON.stringify({
    status,
    headers: responseHeaders,
    body: Buffer.concat(chunks).toString('utf8'),
    rst_code: stream.rstCode ?? null,
  }) + '\n');
  stream.destroy();
  session.close();
};
// Once the response is complete, stop: a server may answer before the upload ends and reset the
// stream with NO_ERROR (RFC 9113 §8.1); Node 20 then never finishes writing, so waiting for
// 'close' alone would hang. Report after the stream's own frames had a moment to arrive.
stream.on('end', () => setTimeout(report, 100));
stream.on('close', report);
stream.end(body || undefined);
