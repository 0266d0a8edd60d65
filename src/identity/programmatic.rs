//! The programmatic login API (DESIGN.md §4): scripts ask a route host for a signed sign-in URL,
//! a person opens it, and the script's redirect URI receives the session token.
//!
//! ```text
//! script ── GET <route>/.portcullis/api/v1/login?redirect_uri=http://127.0.0.1:8000/cb
//!        ◄─ 200 text/plain  <auth>/.portcullis/sign_in?redirect_uri=…&route=…&exp=…&kid=…&sig=…
//! browser ── that URL ── (IdP sign-in, or the authenticate host's session) ──►
//!        ◄─ 302 http://127.0.0.1:8000/cb?portcullis_jwt=<session>&pomerium_jwt=<session>
//! ```
//!
//! Pure: the redirect-URI rules (WHATWG parsing with the `url` crate, hosts compared as hosts)
//! and the signed parameters (HMAC-SHA256 with a key derived from the current signing key, over
//! every parameter; any other parameter refuses the URL), with `now` passed in.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use url::{Host, Url};

use super::keys::KeySet;

/// How long a signed sign-in URL is good for.
pub const LOGIN_URL_LIFETIME_SECS: i64 = 300;
/// The parameters of a signed sign-in URL, all of them signed.
const SIGNED_PARAMS: [&str; 5] = ["redirect_uri", "route", "exp", "kid", "sig"];

/// Why a redirect URI or a signed sign-in URL is refused; fixed texts for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProgrammaticError {
    /// No redirect URI was given (or more than one).
    #[error("redirect_uri is required, once")]
    MissingRedirect,
    /// Not an absolute http(s) URL without credentials and fragment.
    #[error("redirect_uri must be an absolute http or https URL without user info or fragment")]
    InvalidRedirect,
    /// The host is neither loopback nor allowed.
    #[error("redirect_uri must be on a loopback host or a host programmaticRedirectDomains allows")]
    RedirectNotAllowed,
    /// A parameter is missing, repeated, unknown or malformed.
    #[error("the sign-in URL is malformed")]
    Malformed,
    /// The signature does not match (a changed parameter, another key).
    #[error("the sign-in URL's signature does not match")]
    BadSignature,
    /// Past its five minutes.
    #[error("the sign-in URL has expired")]
    Expired,
}

/// Whether `url`'s host is loopback: `localhost`, `127.0.0.1` or `[::1]` (as parsed hosts,
/// never by string prefix or suffix).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    }
}

/// Checks a programmatic redirect URI: an absolute `http`/`https` URL (WHATWG parsing), no user
/// info, no fragment, on a loopback host or a host listed in `global` — and, when the route
/// narrows the list (`route` is `Some`), also listed there.
pub fn check_redirect_uri(
    text: &str,
    global: &[String],
    route: Option<&[String]>,
) -> Result<Url, ProgrammaticError> {
    let url = Url::parse(text).map_err(|_| ProgrammaticError::InvalidRedirect)?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
        || url.fragment().is_some()
        || url.host().is_none()
    {
        return Err(ProgrammaticError::InvalidRedirect);
    }
    if is_loopback(&url) {
        return Ok(url);
    }
    let Some(Host::Domain(host)) = url.host() else {
        return Err(ProgrammaticError::RedirectNotAllowed);
    };
    let listed = |list: &[String]| list.iter().any(|d| d.eq_ignore_ascii_case(host));
    if listed(global) && route.is_none_or(listed) {
        Ok(url)
    } else {
        Err(ProgrammaticError::RedirectNotAllowed)
    }
}

fn message(redirect_uri: &str, route: &str, exp: i64, kid: &str) -> Vec<u8> {
    format!("portcullis-login-v1\n{redirect_uri}\n{route}\n{exp}\n{kid}").into_bytes()
}

/// The signed sign-in URL on `sign_in` (the authenticate host's sign-in path) for a login from
/// the route at `route_origin` back to `redirect_uri`.
pub fn signed_login_url(
    keys: &KeySet,
    sign_in: &Url,
    redirect_uri: &Url,
    route_origin: &str,
    now: i64,
) -> Url {
    let exp = now + LOGIN_URL_LIFETIME_SECS;
    let key = keys.current();
    let tag = key.mac_key().sign(&message(
        redirect_uri.as_str(),
        route_origin,
        exp,
        key.kid(),
    ));
    let mut url = sign_in.clone();
    url.set_fragment(None);
    url.query_pairs_mut()
        .clear()
        .append_pair("redirect_uri", redirect_uri.as_str())
        .append_pair("route", route_origin)
        .append_pair("exp", &exp.to_string())
        .append_pair("kid", key.kid())
        .append_pair("sig", &URL_SAFE_NO_PAD.encode(tag));
    url
}

/// A verified signed sign-in request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// Where the session token goes.
    pub redirect_uri: Url,
    /// The origin of the route the URL was issued for.
    pub route: String,
    /// When the URL expires.
    pub expires: i64,
}

/// Whether a sign-in query is a signed programmatic one (it has `sig`).
pub fn is_signed_query(query: Option<&str>) -> bool {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).any(|(n, _)| n == "sig")
}

/// Verifies the query of a signed sign-in URL: exactly the signed parameters, once each, a
/// signature by an accepted key over all of them, not expired.
pub fn verify_login_query(
    keys: Option<&KeySet>,
    query: Option<&str>,
    now: i64,
) -> Result<LoginRequest, ProgrammaticError> {
    let mut values: [Option<String>; 5] = Default::default();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let i = SIGNED_PARAMS
            .iter()
            .position(|p| *p == name)
            .ok_or(ProgrammaticError::Malformed)?;
        if values[i].replace(value.into_owned()).is_some() {
            return Err(ProgrammaticError::Malformed);
        }
    }
    let [Some(redirect), Some(route), Some(exp), Some(kid), Some(sig)] = values else {
        return Err(ProgrammaticError::Malformed);
    };
    let exp: i64 = exp.parse().map_err(|_| ProgrammaticError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(sig.as_bytes())
        .map_err(|_| ProgrammaticError::Malformed)?;
    let key = keys
        .and_then(|k| k.mac_key(&kid, now))
        .ok_or(ProgrammaticError::BadSignature)?;
    if !key.verify(&message(&redirect, &route, exp, &kid), &tag) {
        return Err(ProgrammaticError::BadSignature);
    }
    if now > exp {
        return Err(ProgrammaticError::Expired);
    }
    let redirect_uri = Url::parse(&redirect).map_err(|_| ProgrammaticError::Malformed)?;
    Ok(LoginRequest {
        redirect_uri,
        route,
        expires: exp,
    })
}

/// `redirect_uri` with `portcullis_jwt` and `pomerium_jwt` added to its query.
pub fn redirect_with_token(redirect_uri: &Url, token: &str) -> Url {
    let mut url = redirect_uri.clone();
    url.query_pairs_mut()
        .append_pair("portcullis_jwt", token)
        .append_pair("pomerium_jwt", token);
    url
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::identity::keys::Algorithm;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn loopback_redirects_pass_and_look_alikes_do_not() {
        for ok in [
            "http://localhost:8000/cb",
            "http://127.0.0.1:1/",
            "http://[::1]:9999/x?y=1",
            "http://LOCALHOST/cb",
            "https://localhost/",
        ] {
            assert!(check_redirect_uri(ok, &[], None).is_ok(), "{ok}");
        }
        for bad in [
            "http://localhost.evil.example/",
            "http://localhost@evil.example/",
            "http://evil.example#@localhost/",
            "http://evil.example/#localhost",
            "//evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "http://127.0.0.2/",
            "http://evil.example%2flocalhost/",
            "http://user:pw@localhost/",
            "ftp://localhost/",
            "http://localhost:8000/cb#frag",
            "",
        ] {
            assert!(check_redirect_uri(bad, &[], None).is_err(), "{bad}");
        }
    }

    #[test]
    fn listed_hosts_are_exact_and_a_route_can_only_narrow() {
        let global = vec!["cli.example.com".to_owned(), "other.example.com".to_owned()];
        assert!(check_redirect_uri("https://cli.example.com/cb", &global, None).is_ok());
        assert!(check_redirect_uri("https://CLI.example.com/cb", &global, None).is_ok());
        assert!(check_redirect_uri("https://x.cli.example.com/cb", &global, None).is_err());
        assert!(check_redirect_uri("https://cli.example.com.evil/cb", &global, None).is_err());
        let narrow = vec!["other.example.com".to_owned()];
        assert!(check_redirect_uri("https://cli.example.com/cb", &global, Some(&narrow)).is_err());
        assert!(check_redirect_uri("https://other.example.com/cb", &global, Some(&narrow)).is_ok());
        let widen = vec!["new.example.com".to_owned()];
        assert!(check_redirect_uri("https://new.example.com/cb", &global, Some(&widen)).is_err());
        assert!(check_redirect_uri("http://localhost/cb", &global, Some(&[])).is_ok());
    }

    #[test]
    fn signed_urls_verify_and_every_change_is_refused() {
        let keys = KeySet::generate(Algorithm::Es256, NOW - 10).unwrap();
        let sign_in = Url::parse("https://auth.example.com/.portcullis/sign_in").unwrap();
        let cb = Url::parse("http://127.0.0.1:8000/cb").unwrap();
        let url = signed_login_url(&keys, &sign_in, &cb, "https://app.example.com", NOW);
        let ok = verify_login_query(Some(&keys), url.query(), NOW + 10).unwrap();
        assert_eq!(ok.redirect_uri, cb);
        assert_eq!(ok.route, "https://app.example.com");
        assert!(is_signed_query(url.query()));

        let expired =
            verify_login_query(Some(&keys), url.query(), NOW + LOGIN_URL_LIFETIME_SECS + 1);
        assert_eq!(expired.unwrap_err(), ProgrammaticError::Expired);
        let query = url.query().unwrap();
        for (from, to) in [
            ("127.0.0.1%3A8000", "127.0.0.1%3A8001"),
            ("app.example.com", "evil.example.com"),
        ] {
            let tampered = query.replace(from, to);
            assert_eq!(
                verify_login_query(Some(&keys), Some(&tampered), NOW).unwrap_err(),
                ProgrammaticError::BadSignature,
                "{tampered}"
            );
        }
        let exp = format!("exp={}", NOW + LOGIN_URL_LIFETIME_SECS);
        let longer = query.replace(&exp, &format!("exp={}", NOW + 99_999));
        assert_eq!(
            verify_login_query(Some(&keys), Some(&longer), NOW).unwrap_err(),
            ProgrammaticError::BadSignature
        );
        let extra = format!("{query}&prompt=none");
        assert_eq!(
            verify_login_query(Some(&keys), Some(&extra), NOW).unwrap_err(),
            ProgrammaticError::Malformed
        );
        let unsigned = query.split("&sig=").next().unwrap();
        assert_eq!(
            verify_login_query(Some(&keys), Some(unsigned), NOW).unwrap_err(),
            ProgrammaticError::Malformed
        );
        let other = KeySet::generate(Algorithm::Es256, NOW).unwrap();
        assert_eq!(
            verify_login_query(Some(&other), Some(query), NOW).unwrap_err(),
            ProgrammaticError::BadSignature
        );
    }

    #[test]
    fn the_token_is_added_to_the_redirect_under_both_names() {
        let cb = Url::parse("http://localhost:8000/cb?state=x").unwrap();
        let url = redirect_with_token(&cb, "a.b.c");
        assert_eq!(
            url.as_str(),
            "http://localhost:8000/cb?state=x&portcullis_jwt=a.b.c&pomerium_jwt=a.b.c"
        );
    }
}
