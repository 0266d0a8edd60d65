//! The HTML pages people see: who am I, access denied, sign-in errors, signed out.
//!
//! Every page is built here from fixed markup and escaped values, with headers that keep it
//! out of frames and caches (`X-Frame-Options: DENY`, CSP `frame-ancestors 'none'`,
//! `Cache-Control: no-store`, `Referrer-Policy: same-origin`). Called by the sign-in handlers
//! and by the proxy's refusal map for browsers.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value};

/// The CSP of every page: nothing loads, inline styles only, never framed.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/// `text` with `& < > " '` escaped for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Sets the headers every page carries.
pub fn page_headers(headers: &mut http::HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    // `same-origin`, not `no-referrer`: with `no-referrer` browsers send `Origin: null` on the
    // sign-out form's POST, and the origin check would refuse it.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// A page with `status`, a `title` (escaped) and `body` (markup, already escaped by the
/// caller).
pub fn page(status: StatusCode, title: &str, body: &str) -> Response<Bytes> {
    let title = escape(title);
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body><main><h1>{title}</h1>\n{body}\n</main></body></html>\n"
    );
    let mut response = Response::new(Bytes::from(html));
    *response.status_mut() = status;
    page_headers(response.headers_mut());
    response
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f5f5f7;color:#1d1d1f}\
main{max-width:46rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:8px;\
box-shadow:0 1px 3px rgba(0,0,0,.12)}h1{font-size:1.4rem;margin-top:0}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .5rem;\
border-bottom:1px solid #eee;vertical-align:top;word-break:break-all}\
button{font-size:1rem;padding:.4rem 1rem;margin-top:1rem}code{font-size:.9em}";

/// What the who-am-I page shows.
#[derive(Debug)]
pub struct WhoAmI<'a> {
    /// The subject.
    pub subject: &'a str,
    /// The email, if any.
    pub email: Option<&'a str>,
    /// The identity provider (`iss` of the person's claims).
    pub issuer: Option<&'a str>,
    /// The claims (never tokens).
    pub claims: &'a Map<String, Value>,
    /// When the session ends (unix seconds), for people.
    pub session_expires: Option<i64>,
    /// The sign-out form's action and CSRF token, for sessions from a cookie.
    pub sign_out: Option<(&'a str, &'a str)>,
}

/// The who-am-I page.
pub fn who_am_i(me: &WhoAmI<'_>) -> Response<Bytes> {
    let mut body = String::from("<table id=\"identity\">");
    let mut row = |name: &str, id: &str, value: &str| {
        let _ = write!(
            body,
            "<tr><th>{}</th><td id=\"{id}\">{}</td></tr>",
            escape(name),
            escape(value)
        );
    };
    row("Subject", "identity-subject", me.subject);
    if let Some(email) = me.email {
        row("Email", "identity-email", email);
    }
    if let Some(issuer) = me.issuer {
        row("Identity provider", "identity-issuer", issuer);
    }
    if let Some(expires) = me.session_expires {
        let when = jiff::Timestamp::from_second(expires)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| expires.to_string());
        row("Session expires", "session-expires", &when);
    }
    body.push_str("</table><h2>Claims</h2><table id=\"claims\">");
    for (name, value) in me.claims {
        let shown = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = write!(
            body,
            "<tr><th>{}</th><td><code>{}</code></td></tr>",
            escape(name),
            escape(&shown)
        );
    }
    body.push_str("</table>");
    if let Some((action, csrf)) = me.sign_out {
        let _ = write!(
            body,
            "<form id=\"sign-out\" method=\"post\" action=\"{}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form>",
            escape(action),
            escape(csrf)
        );
    }
    page(StatusCode::OK, "Who am I", &body)
}

/// The page for a person the route's policy does not let in.
pub fn access_denied(who: Option<&str>) -> Response<Bytes> {
    let body = match who {
        Some(who) => format!(
            "<p>You are signed in as <strong id=\"identity-email\">{}</strong>, but access to \
             this page is denied by its policy.</p><p>Ask the owner of this service for \
             access, or sign in as someone else.</p>",
            escape(who)
        ),
        None => "<p>Access to this page is denied by its policy.</p>".to_owned(),
    };
    page(StatusCode::FORBIDDEN, "Access denied", &body)
}

/// A refused sign-in step (bad or replayed callback, expired link, ...): `message` is fixed
/// text chosen by the caller, never the request's.
pub fn sign_in_error(status: StatusCode, message: &str) -> Response<Bytes> {
    let body = format!(
        "<p>{}</p><p>Go back to the page you wanted and sign in again.</p>",
        escape(message)
    );
    page(status, "Sign-in failed", &body)
}

/// `405` for a page asked for with the wrong method; `allow` is the `Allow` header.
pub fn method_not_allowed(allow: &'static str) -> Response<Bytes> {
    let mut response = sign_in_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "This method is not allowed here.",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The page after signing out.
pub fn signed_out() -> Response<Bytes> {
    page(
        StatusCode::OK,
        "Signed out",
        "<p id=\"signed-out\">You are signed out.</p>",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_pages_refuse_frames() {
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"name":"<script>x</script>","n":1}"#).unwrap();
        let response = who_am_i(&WhoAmI {
            subject: "a\"b",
            email: Some("alice@example.com"),
            issuer: None,
            claims: &claims,
            session_expires: Some(1_800_000_000),
            sign_out: Some(("/.portcullis/sign_out", "tok'en")),
        });
        let html = std::str::from_utf8(response.body()).unwrap();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("a&quot;b"));
        assert!(html.contains("tok&#39;en"));
        assert!(html.contains("name=\"csrf\""));
        assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert!(
            response.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert_eq!(access_denied(None).status(), StatusCode::FORBIDDEN);
    }
}
