//! `portcullis login` as a script runs it: the built binary against a stand-in route host that
//! serves the login API and a sign-in page, with this test as the browser.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::TcpListener;
use url::Url;

/// A route host: `/.portcullis/api/v1/login` answers a sign-in URL on this host, whose page
/// redirects straight back to the caller with `token`. Counts every request.
async fn fake_route(token: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (token, count) = (token.clone(), count.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let response = answer(&request, port, &token);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://127.0.0.1:{port}"), requests)
}

fn answer(request: &Request<Incoming>, port: u16, token: &str) -> Response<Full<Bytes>> {
    let query = request.uri().query().unwrap_or_default();
    let redirect_uri = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned());
    let response = Response::builder();
    match (request.uri().path(), redirect_uri) {
        ("/.portcullis/api/v1/login", Some(redirect_uri)) => {
            let mut sign_in = Url::parse(&format!("http://127.0.0.1:{port}/sign_in")).unwrap();
            sign_in
                .query_pairs_mut()
                .append_pair("redirect_uri", &redirect_uri);
            response
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Full::new(Bytes::from(sign_in.to_string())))
        }
        ("/sign_in", Some(redirect_uri)) => {
            let mut back = Url::parse(&redirect_uri).unwrap();
            back.query_pairs_mut()
                .append_pair("portcullis_jwt", token)
                .append_pair("pomerium_jwt", token);
            response
                .status(StatusCode::FOUND)
                .header(header::LOCATION, back.as_str())
                .body(Full::default())
        }
        _ => response.status(StatusCode::NOT_FOUND).body(Full::default()),
    }
    .unwrap()
}

/// A browser: GET `url` and follow redirects; the final status and headers.
async fn browse(url: &str) -> (StatusCode, http::HeaderMap) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let mut url = url.to_owned();
    for _ in 0..5 {
        let response = client.get(url.parse().unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let _ = body.collect().await;
        match parts.headers.get(header::LOCATION) {
            Some(next) if parts.status.is_redirection() => url = next.to_str().unwrap().to_owned(),
            _ => return (parts.status, parts.headers),
        }
    }
    panic!("too many redirects");
}

fn portcullis(config_home: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("login")
        .args(args)
        .env("XDG_CONFIG_HOME", config_home)
        .env("HOME", config_home)
        .env("BROWSER", "/nonexistent/browser")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `portcullis login` and, as the browser, opens the URL it prints on stderr.
async fn login_with_browser(config_home: &Path, route: &str) -> (Output, Vec<String>) {
    let mut child = portcullis(config_home, &[route, "--no-browser", "--timeout", "30s"])
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut lines = Vec::new();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            lines.push(line.clone());
            if let Some(url) = line.strip_prefix("Open this URL to sign in: ") {
                return url.to_owned();
            }
        }
        panic!("no sign-in URL on stderr: {lines:?}");
    })
    .await
    .expect("the sign-in URL is printed");
    let (status, headers) = browse(&url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    while let Some(line) = stderr.next_line().await.unwrap() {
        lines.push(line);
    }
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("portcullis login exits")
        .unwrap();
    (output, lines)
}

fn session_token(exp: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"portcullis-session+jwt"}"#);
    let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"alice","exp":{exp}}}"#));
    format!("{header}.{payload}.c2lnbmF0dXJl")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn login_prints_the_token_caches_it_and_reuses_it_without_the_network() {
    let token = session_token(jiff::Timestamp::now().as_second() + 3600);
    let (route, requests) = fake_route(token.clone()).await;
    let home = tempfile::tempdir().unwrap();

    let (output, stderr) = login_with_browser(home.path(), &format!("{route}/reports")).await;
    assert!(output.status.success(), "{stderr:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("{token}\n")
    );
    assert!(
        stderr.iter().all(|l| !l.contains(&token)),
        "the token is never on stderr: {stderr:?}"
    );
    let signed_in = requests.load(Ordering::SeqCst);
    assert_eq!(signed_in, 2, "the login API and the sign-in page");

    let sessions = home.path().join("portcullis/sessions");
    let digest: String = Sha256::digest(route.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let file = sessions.join(digest);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&sessions), 0o700);
    assert!(std::fs::read_to_string(&file).unwrap().contains(&token));

    // Again: the cached token, no request, no sign-in URL.
    let output = portcullis(home.path(), &[&route, "--no-browser"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("{token}\n")
    );
    assert_eq!(String::from_utf8(output.stderr).unwrap(), "");
    assert_eq!(requests.load(Ordering::SeqCst), signed_in);

    // --no-cache signs in again.
    let mut child = portcullis(home.path(), &[&route, "--no-browser", "--no-cache"])
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = stderr.next_line().await.unwrap().unwrap();
    assert!(line.starts_with("Open this URL to sign in: "), "{line}");
    child.kill().await.unwrap();
    assert_eq!(requests.load(Ordering::SeqCst), signed_in + 1);
}

#[tokio::test]
async fn bad_route_urls_and_timeouts_fail_with_nothing_on_stdout() {
    let home = tempfile::tempdir().unwrap();
    let output = portcullis(home.path(), &["https://user@api.example.com"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("must be an absolute http or https URL"),
        "{stderr}"
    );

    let (route, _) = fake_route(session_token(2_000_000_000)).await;
    let output = portcullis(home.path(), &[&route, "--no-browser", "--timeout", "1s"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("no sign-in arrived within 1s"), "{stderr}");
    assert!(!home.path().join("portcullis/sessions").exists());
}
