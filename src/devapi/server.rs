//! The HTTP face of the embedded API: TLS, bearer-token authentication, URL routing, content
//! negotiation, and the list and watch protocols (chunked JSON event streams with bookmarks,
//! watch-list and in-stream `410 Expired` errors).
//!
//! Request semantics live in [`Cluster`]; this file only translates HTTP to calls and results
//! (and every error) to Kubernetes-shaped responses.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::cluster::{
    Cluster, DeleteOptions, FieldValidation, PatchBody, Propagation, Target, WriteOptions, served,
};
use super::discovery;
use super::error::{ApiError, Result};
use super::openapi;
use super::resources::ResourceDef;
use super::satoken::SaIssuer;
use super::scale;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{EventType, WatchEvent, WatchFrom};
use super::table::{self, IncludeObject};

/// Request bodies larger than this are refused with 413 (kube-apiserver's limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The body type of every response.
pub type Body = BoxBody<Bytes, Infallible>;

/// Shared state of the HTTP server.
pub struct ServerState {
    /// The cluster.
    pub cluster: Arc<Cluster>,
    /// The bearer token clients must present.
    pub token: String,
    /// `host:port` clients reach the server at.
    pub address: String,
    /// Flips to `true` when the server is shutting down (ends watches).
    pub shutdown: watch::Receiver<bool>,
    /// The service-account token issuer.
    pub sa: Arc<SaIssuer>,
    /// Records which calls clients make, when asked to (`--record-api-access`).
    pub access: std::sync::OnceLock<super::access::AccessRecorder>,
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(full(bytes));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.to_status())
}

/// Accept connections until `shutdown` flips, then drain open connections (watches end).
pub async fn serve(listener: TcpListener, tls: TlsAcceptor, state: Arc<ServerState>) {
    let mut shutdown = state.shutdown.clone();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting an API connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let tls = tls.clone();
                let state = state.clone();
                conns.spawn(async move { connection(stream, peer, tls, state).await });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: TlsAcceptor,
    state: Arc<ServerState>,
) {
    let _ = stream.set_nodelay(true);
    let tls_stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let svc_state = state.clone();
    let service = hyper::service::service_fn(move |req| {
        let state = svc_state.clone();
        async move { Ok::<_, Infallible>(handle(state, req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(1024 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1000)
        .max_header_list_size(1024 * 1024);
    let conn = builder.serve_connection(TokioIo::new(tls_stream), service);
    tokio::pin!(conn);
    let mut shutdown = state.shutdown.clone();
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "API connection ended with an error");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(3), conn.as_mut()).await;
        }
    }
}

/// Handle one request.
pub async fn handle(state: Arc<ServerState>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match route(&state, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(%method, path, status = resp.status().as_u16(), latency_ms = started.elapsed().as_secs_f64() * 1e3, "api request");
    resp
}

fn authorized(state: &ServerState, req: &Request<Incoming>) -> bool {
    use subtle::ConstantTimeEq;
    let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(token) = v.strip_prefix("Bearer ") else {
        return false;
    };
    token.as_bytes().ct_eq(state.token.as_bytes()).into()
}

/// Parsed query parameters.
#[derive(Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Query(
            url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    /// Write options; the field manager is `fieldManager`, else the client's User-Agent up to
    /// its first `/` (`kubectl`), as kube-apiserver derives it.
    fn write_options(&self, user_agent: &str) -> Result<WriteOptions> {
        let manager = match self.get("fieldManager").filter(|m| !m.is_empty()) {
            Some(m) => {
                if m.chars().count() > 128 || m.chars().any(|c| c.is_control()) {
                    return Err(ApiError::invalid_field(
                        "meta.k8s.io",
                        "PatchOptions",
                        "",
                        "fieldManager",
                        "Invalid value: must be at most 128 printable characters",
                    ));
                }
                m.to_string()
            }
            None => user_agent
                .split('/')
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(128)
                .collect(),
        };
        Ok(WriteOptions {
            dry_run: self.dry_run()?,
            field_validation: FieldValidation::parse(self.get("fieldValidation").unwrap_or(""))?,
            manager,
        })
    }
    fn dry_run(&self) -> Result<bool> {
        let values: Vec<&str> = self
            .0
            .iter()
            .filter(|(k, _)| k == "dryRun")
            .map(|(_, v)| v.as_str())
            .collect();
        match values.as_slice() {
            [] => Ok(false),
            ["All"] => Ok(true),
            other => Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            ))),
        }
    }
}

/// What a resource URL names.
struct ResourcePath {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

fn decode(seg: &str) -> Result<String> {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::bad_request("the URL path is not valid UTF-8"))
}

/// Parse `/api/v1/...` and `/apis/<g>/<v>/...` resource paths (after the group/version prefix).
fn parse_resource(group: &str, version: &str, rest: &[&str]) -> Result<Option<ResourcePath>> {
    let mut parts: Vec<String> = rest.iter().map(|s| decode(s)).collect::<Result<_>>()?;
    if parts.is_empty() {
        return Ok(None);
    }
    let mut namespace = None;
    if parts[0] == "namespaces" && parts.len() > 1 {
        // `namespaces/<ns>/status` and `/finalize` are subresources of the namespace itself.
        if parts.len() > 2 && !matches!(parts[2].as_str(), "status" | "finalize") {
            namespace = Some(parts[1].clone());
            parts.drain(0..2);
        }
    }
    if parts.len() > 3 {
        return Ok(None);
    }
    let mut it = parts.into_iter();
    let plural = it.next().unwrap_or_default();
    Ok(Some(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        plural,
        name: it.next(),
        sub: it.next(),
    }))
}

async fn route(state: &Arc<ServerState>, req: Request<Incoming>) -> Result<Response<Body>> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => return Ok(text(StatusCode::OK, "ok")),
        "/version" | "/version/" => {
            return Ok(json_response(StatusCode::OK, &discovery::version()));
        }
        // Public keys and metadata only, so token verifiers need no credentials.
        "/.well-known/openid-configuration" => {
            return Ok(json_response(StatusCode::OK, &state.sa.discovery()));
        }
        "/openid/v1/jwks" => return Ok(json_response(StatusCode::OK, &state.sa.jwks())),
        _ => {}
    }
    if !authorized(state, &req) {
        return Err(ApiError::unauthorized());
    }
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let cluster = &state.cluster;
    let read_only = req.method() == Method::GET;
    let rp = match segs.as_slice() {
        ["api"] if read_only => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::core_versions(&state.address),
            ));
        }
        ["apis"] if read_only => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::group_list(&cluster.registry()),
            ));
        }
        ["api", "v1"] if read_only => {
            let l = discovery::resource_list(&cluster.registry(), "", "v1")
                .ok_or_else(|| ApiError::no_route(&path))?;
            return Ok(json_response(StatusCode::OK, &l));
        }
        ["apis", g] if read_only => {
            let d = discovery::group(&cluster.registry(), g)
                .ok_or_else(|| ApiError::no_route(&path))?;
            return Ok(json_response(StatusCode::OK, &d));
        }
        ["apis", g, v] if read_only => {
            let l = discovery::resource_list(&cluster.registry(), g, v)
                .ok_or_else(|| ApiError::no_route(&path))?;
            return Ok(json_response(StatusCode::OK, &l));
        }
        ["openapi", "v3"] if read_only => {
            return Ok(json_response(
                StatusCode::OK,
                &openapi::index(&cluster.registry()),
            ));
        }
        ["openapi", "v3", "api", v] if read_only => {
            let d = openapi::document(&cluster.registry(), "", v)
                .ok_or_else(|| ApiError::no_route(&path))?;
            return Ok(json_response(StatusCode::OK, &d));
        }
        ["openapi", "v3", "apis", g, v] if read_only => {
            let d = openapi::document(&cluster.registry(), g, v)
                .ok_or_else(|| ApiError::no_route(&path))?;
            return Ok(json_response(StatusCode::OK, &d));
        }
        ["api", "v1", rest @ ..] => parse_resource("", "v1", rest)?,
        ["apis", g, v, rest @ ..] => parse_resource(g, v, rest)?,
        _ => None,
    };
    let Some(rp) = rp else {
        return Err(ApiError::no_route(&path));
    };
    let def = cluster
        .resolve(&rp.group, &rp.version, &rp.plural)
        .ok_or_else(|| ApiError::no_route(&path))?;
    if rp.namespace.is_some() && !def.namespaced {
        return Err(ApiError::no_route(&path));
    }
    let query = Query::parse(req.uri().query());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Some(recorder) = state.access.get()
        && let Some(verb) =
            super::access::verb(req.method(), rp.name.is_some(), query.flag("watch"))
    {
        recorder.record(super::access::Access {
            user_agent: user_agent.clone(),
            verb,
            group: def.group.to_string(),
            resource: match &rp.sub {
                Some(sub) => format!("{}/{sub}", def.plural),
                None => def.plural.to_string(),
            },
            namespace: rp.namespace.clone(),
        });
    }
    if rp.sub.as_deref() == Some("token") && def.group.is_empty() && def.plural == "serviceaccounts"
    {
        let (Some(ns), Some(name)) = (rp.namespace.as_deref(), rp.name.as_deref()) else {
            return Err(ApiError::no_route(&path));
        };
        if req.method() != Method::POST {
            return Err(ApiError::method_not_allowed(req.method().as_str(), &path));
        }
        let sa = cluster.get(&target(def.clone(), ns, name.to_string())?)?;
        let body = read_body(req).await?;
        let resp = state.sa.token_request(&sa, &body, jiff::Timestamp::now())?;
        return Ok(json_response(StatusCode::CREATED, &resp));
    }
    if rp.sub.as_deref() == Some("scale") && scale::supported(&def) {
        let Some(name) = rp.name.clone() else {
            return Err(ApiError::no_route(&path));
        };
        let t = target(def.clone(), rp.namespace.as_deref().unwrap_or(""), name)?;
        return scale_request(cluster, &t, req, &query, &user_agent).await;
    }
    let status = match rp.sub.as_deref() {
        None => false,
        Some("status") if def.status_subresource => true,
        Some(_) => return Err(ApiError::no_route(&path)),
    };
    let table = if wants_table(&req) {
        Some(
            IncludeObject::from_query(query.get("includeObject").unwrap_or("")).ok_or_else(|| {
                ApiError::bad_request("includeObject: Unsupported value: supported values: \"None\", \"Metadata\", \"Object\"")
            })?,
        )
    } else {
        None
    };
    let ns = rp.namespace.clone().unwrap_or_default();
    let method = req.method().clone();
    match (method.clone(), rp.name) {
        (Method::GET, None) => {
            if query.flag("watch") {
                watch(state.clone(), def, rp.namespace, &query, table)
            } else {
                list(cluster, &def, rp.namespace.as_deref(), &query, table)
            }
        }
        (Method::POST, None) => {
            let opts = query.write_options(&user_agent)?;
            let (body, mut warnings) = read_object(req, &opts).await?;
            let w = cluster.create(def, &ns, body, &opts).await?;
            warnings.extend(w.warnings);
            Ok(with_warnings(
                json_response(StatusCode::CREATED, &w.object),
                &warnings,
            ))
        }
        (Method::DELETE, None) if def.verbs.contains(&"deletecollection") => {
            delete_collection(cluster, def, &ns, &query, req).await
        }
        (Method::GET, Some(name)) => {
            let t = target(def, &ns, name)?;
            let o = cluster.get(&t)?;
            match table {
                Some(include) => {
                    let meta = json!({"resourceVersion": o.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
                    Ok(table_response(&t.def, &[&o], include, meta))
                }
                None => Ok(json_response(StatusCode::OK, &o)),
            }
        }
        (Method::PUT, Some(name)) => {
            let t = target(def, &ns, name)?;
            let opts = query.write_options(&user_agent)?;
            let (body, mut warnings) = read_object(req, &opts).await?;
            let w = cluster.update(&t, body, status, &opts).await?;
            warnings.extend(w.warnings);
            Ok(with_warnings(
                json_response(StatusCode::OK, &w.object),
                &warnings,
            ))
        }
        (Method::PATCH, Some(name)) => {
            let t = target(def, &ns, name)?;
            let opts = query.write_options(&user_agent)?;
            let patch = read_patch(&t.def, req, &query).await?;
            if matches!(patch, PatchBody::Apply { .. })
                && query.get("fieldManager").unwrap_or("").is_empty()
            {
                return Err(ApiError::invalid_field(
                    "meta.k8s.io",
                    "PatchOptions",
                    "",
                    "fieldManager",
                    "Required value: is required for apply patch",
                ));
            }
            if !matches!(patch, PatchBody::Apply { .. }) && query.get("force").is_some() {
                return Err(ApiError::invalid_field(
                    "meta.k8s.io",
                    "PatchOptions",
                    "",
                    "force",
                    "Forbidden: may not be specified for non-apply patch",
                ));
            }
            let w = cluster.patch(&t, &patch, status, &opts).await?;
            Ok(with_warnings(
                json_response(StatusCode::OK, &w.object),
                &w.warnings,
            ))
        }
        (Method::DELETE, Some(name)) if !status => {
            let t = target(def, &ns, name)?;
            let opts = delete_options(&query, req).await?;
            let o = cluster.delete(&t, &opts).await?;
            Ok(json_response(StatusCode::OK, &o))
        }
        (m, _) => Err(ApiError::method_not_allowed(m.as_str(), &path)),
    }
}

/// `GET`, `PUT` and `PATCH` of `.../<workload>/<name>/scale` (what `kubectl scale` uses).
async fn scale_request(
    cluster: &Cluster,
    t: &Target,
    req: Request<Incoming>,
    query: &Query,
    user_agent: &str,
) -> Result<Response<Body>> {
    let method = req.method().clone();
    let obj = cluster.get(t)?;
    let current = scale::view(&obj);
    let requested = match method {
        Method::GET => return Ok(json_response(StatusCode::OK, &current)),
        Method::PUT => read_body(req).await?,
        Method::PATCH => {
            let mut doc = current.clone();
            match read_patch(&t.def, req, query).await? {
                // A Scale has no lists, so a strategic merge patch merges like a merge patch.
                PatchBody::Merge(p) | PatchBody::Strategic(p) => json_patch::merge(&mut doc, &p),
                PatchBody::Json(p) => json_patch::patch(&mut doc, &p).map_err(|e| {
                    ApiError::bad_request(format!("the JSON patch could not be applied: {e}"))
                })?,
                PatchBody::Apply { .. } => {
                    return Err(ApiError::unsupported_media(
                        "application/apply-patch+yaml",
                        &[
                            "application/json-patch+json",
                            "application/merge-patch+json",
                        ],
                    ));
                }
            }
            doc
        }
        other => return Err(ApiError::method_not_allowed(other.as_str(), "scale")),
    };
    let replicas = scale::desired_replicas(&requested, &t.name)?;
    let mut patch = json!({"spec": {"replicas": replicas}});
    if let Some(rv) = requested
        .pointer("/metadata/resourceVersion")
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    let opts = query.write_options(user_agent)?;
    let w = cluster
        .patch(t, &PatchBody::Merge(patch), false, &opts)
        .await?;
    Ok(json_response(StatusCode::OK, &scale::view(&w.object)))
}

fn target(def: Arc<ResourceDef>, ns: &str, name: String) -> Result<Target> {
    if def.namespaced && ns.is_empty() {
        return Err(ApiError::no_route(&format!(
            "{} {name} without a namespace",
            def.plural
        )));
    }
    Ok(Target {
        def,
        namespace: ns.to_string(),
        name,
    })
}

fn text(code: StatusCode, s: &'static str) -> Response<Body> {
    let mut r = Response::new(full(s));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

async fn read_bytes(req: Request<Incoming>) -> Result<Bytes> {
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > MAX_BODY
    {
        return Err(ApiError::too_large(MAX_BODY));
    }
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(MAX_BODY)),
        Err(_) => Err(ApiError::bad_request("the request body could not be read")),
    }
}

fn media_type(req: &Request<Incoming>) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Decode a request body; also returns the paths of duplicated fields (JSON only: the YAML
/// parser refuses duplicate keys outright).
fn decode_body(media: &str, bytes: &[u8]) -> Result<(Value, Vec<String>)> {
    let (v, dups) = match media {
        "" | "application/json" | "*/*" => super::jsonbody::parse(bytes).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?,
        // client-go's typed clients (kubectl's generators, helm's release Secrets).
        super::protobuf::CONTENT_TYPE => (
            super::protobuf::decode(bytes).map_err(|e| {
                ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
            })?,
            Vec::new(),
        ),
        "application/yaml" | "application/x-yaml" | "text/yaml" => (
            crate::yaml::from_slice(bytes).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
            })?,
            Vec::new(),
        ),
        other => {
            return Err(ApiError::unsupported_media(
                other,
                &[
                    "application/json",
                    "application/yaml",
                    super::protobuf::CONTENT_TYPE,
                ],
            ));
        }
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok((v, dups))
}

/// An options body (DeleteOptions, TokenRequest): duplicates do not matter.
async fn read_body(req: Request<Incoming>) -> Result<Value> {
    let media = media_type(&req);
    let bytes = read_bytes(req).await?;
    Ok(decode_body(&media, &bytes)?.0)
}

/// An object to create or replace: duplicated fields are refused under `fieldValidation=Strict`
/// and reported under `Warn`, as kube-apiserver's strict decoder does.
async fn read_object(req: Request<Incoming>, opts: &WriteOptions) -> Result<(Value, Vec<String>)> {
    let media = media_type(&req);
    let bytes = read_bytes(req).await?;
    let (v, dups) = decode_body(&media, &bytes)?;
    let found = dups.iter().map(|d| format!("duplicate field \"{d}\""));
    match opts.field_validation {
        FieldValidation::Strict if !dups.is_empty() => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            found.collect::<Vec<_>>().join(", ")
        ))),
        FieldValidation::Warn => Ok((v, found.collect())),
        _ => Ok((v, Vec::new())),
    }
}

async fn read_patch(def: &ResourceDef, req: Request<Incoming>, query: &Query) -> Result<PatchBody> {
    let media = media_type(&req);
    // Custom resources have no strategic merge patch, exactly as in kube-apiserver.
    let accepted: &[&str] = if def.custom.is_some() {
        &[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]
    } else {
        &[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ]
    };
    if !accepted.contains(&media.as_str()) {
        return Err(ApiError::unsupported_media(&media, accepted));
    }
    let bytes = read_bytes(req).await?;
    if media == "application/apply-patch+yaml" {
        let config = crate::yaml::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!("the applied configuration is not valid YAML: {e}"))
        })?;
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "the applied configuration must be an object",
            ));
        }
        return Ok(PatchBody::Apply {
            config,
            force: query.flag("force"),
        });
    }
    if media == "application/strategic-merge-patch+json" {
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!("the strategic merge patch is not valid JSON: {e}"))
        })?;
        return Ok(PatchBody::Strategic(v));
    }
    if media == "application/json-patch+json" {
        let p: json_patch::Patch = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!("the JSON patch could not be decoded: {e}"))
        })?;
        Ok(PatchBody::Json(p))
    } else {
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!("the merge patch is not valid JSON: {e}"))
        })?;
        Ok(PatchBody::Merge(v))
    }
}

async fn delete_options(query: &Query, req: Request<Incoming>) -> Result<DeleteOptions> {
    let media = media_type(&req);
    let bytes = read_bytes(req).await?;
    let mut opts = DeleteOptions {
        dry_run: query.dry_run()?,
        ..Default::default()
    };
    if let Some(p) = query.get("propagationPolicy") {
        opts.propagation = Propagation::parse(p)?;
    }
    if query.get("orphanDependents") == Some("true") {
        opts.propagation = Propagation::Orphan;
    }
    if !bytes.is_empty() {
        let (body, _) = decode_body(&media, &bytes)?;
        if let Some(dr) = body.get("dryRun").and_then(Value::as_array) {
            opts.dry_run |= dr.iter().any(|v| v == "All");
        }
        opts.uid = body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        opts.resource_version = body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            opts.propagation = Propagation::parse(p)?;
        }
        if body.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            opts.propagation = Propagation::Orphan;
        }
    }
    Ok(opts)
}

/// Field selectors kube-apiserver supports beyond `metadata.name` / `metadata.namespace`.
fn supported_field(def: &ResourceDef, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "secrets") => field == "type",
        ("", "pods") => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        ("", "events") => {
            field.starts_with("involvedObject.")
                || matches!(field, "reason" | "reportingComponent" | "source" | "type")
        }
        ("events.k8s.io", "events") => {
            field.starts_with("regarding.")
                || matches!(field, "reason" | "reportingController" | "type")
        }
        ("", "namespaces") => field == "status.phase",
        ("", "nodes") => field == "spec.unschedulable",
        _ => false,
    }
}

struct Selectors {
    label: LabelSelector,
    field: FieldSelector,
}

impl Selectors {
    fn parse(def: &ResourceDef, query: &Query) -> Result<Self> {
        let label = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let field = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if let Some(bad) = field.fields().find(|f| !supported_field(def, f)) {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {bad}"
            )));
        }
        Ok(Self { label, field })
    }
    fn is_empty(&self) -> bool {
        self.label.is_empty() && self.field.is_empty()
    }
    fn matches(&self, obj: &Value) -> bool {
        self.label
            .matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
            && self.field.matches(obj)
    }
}

fn prefix(def: &ResourceDef, ns: Option<&str>) -> String {
    match ns {
        Some(ns) => format!("{}{ns}/", def.key_prefix()),
        None => def.key_prefix(),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    start: String,
}

fn parse_rv(s: &str) -> Result<u64> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: \"{s}\"")))
}

/// Media type of server-side tables.
const TABLE_MEDIA: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// Whether the client asked for a `meta.k8s.io` Table (kubectl's `get`), anywhere in `Accept`.
fn wants_table(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let params: Vec<String> = range
                .split(';')
                .skip(1)
                .map(|p| p.trim().replace(' ', ""))
                .collect();
            params.iter().any(|p| p == "as=Table")
                && params.iter().any(|p| p == "g=meta.k8s.io")
                && params.iter().any(|p| p == "v=v1" || p == "v=v1beta1")
        })
}

fn table_response(
    def: &ResourceDef,
    objects: &[&Value],
    include: IncludeObject,
    list_metadata: Value,
) -> Response<Body> {
    let t = table::table(
        &def.columns,
        &def.group,
        &def.kind,
        objects,
        include,
        list_metadata,
        jiff::Timestamp::now(),
    );
    let mut r = json_response(StatusCode::OK, &t);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TABLE_MEDIA));
    r
}

fn list(
    cluster: &Cluster,
    def: &Arc<ResourceDef>,
    ns: Option<&str>,
    query: &Query,
    table: Option<IncludeObject>,
) -> Result<Response<Body>> {
    let sel = Selectors::parse(def, query)?;
    let limit = match query.get("limit") {
        None | Some("") | Some("0") => None,
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: \"{l}\"")))?,
        ),
    };
    let rv = query.get("resourceVersion").unwrap_or("");
    let rv_match = query.get("resourceVersionMatch").unwrap_or("");
    let (at, start) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
            let t: ContinueToken = serde_json::from_slice(&bytes)
                .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
            if !t.start.starts_with(&prefix(def, ns)) {
                return Err(ApiError::bad_request(
                    "continue key does not belong to this list",
                ));
            }
            (Some(t.rv), Some(t.start))
        }
        None => match rv_match {
            "Exact" => (Some(parse_rv(rv)?), None),
            "" | "NotOlderThan" => {
                if !rv.is_empty() && rv != "0" && parse_rv(rv)? > cluster.store.current_rv() {
                    return Err(ApiError::timeout(format!(
                        "Too large resource version: {rv}, current: {}",
                        cluster.store.current_rv()
                    )));
                }
                (None, None)
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
        },
    };
    let page = cluster
        .store
        .list(
            &prefix(def, ns),
            at,
            start.as_deref(),
            limit,
            &|o| sel.is_empty() || sel.matches(&served(def, o)),
            !sel.is_empty(),
        )
        .map_err(|e| {
            if e.code == 410 && start.is_some() {
                ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
            } else {
                e
            }
        })?;
    let mut metadata = json!({"resourceVersion": page.rv.to_string()});
    if let Some(after) = page.continue_after {
        let token = serde_json::to_vec(&ContinueToken {
            rv: page.rv,
            start: after,
        })
        .unwrap_or_default();
        metadata["continue"] =
            json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token));
        if let Some(n) = page.remaining {
            metadata["remainingItemCount"] = json!(n);
        }
    }
    if let Some(include) = table {
        let served_items: Vec<Arc<Value>> = page.items.iter().map(|i| served(def, i)).collect();
        let refs: Vec<&Value> = served_items.iter().map(|a| a.as_ref()).collect();
        return Ok(table_response(def, &refs, include, metadata));
    }
    // Serialise by hand so a large list is not first copied into one JSON tree.
    let mut out = Vec::with_capacity(256 + page.items.len() * 512);
    out.extend_from_slice(b"{\"kind\":");
    write_json(&mut out, &json!(format!("{}List", def.kind)));
    out.extend_from_slice(b",\"apiVersion\":");
    write_json(&mut out, &json!(def.api_version()));
    out.extend_from_slice(b",\"metadata\":");
    write_json(&mut out, &metadata);
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(&mut out, &served(def, item));
    }
    out.extend_from_slice(b"]}");
    let mut r = Response::new(full(out));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

fn write_json(out: &mut Vec<u8>, v: &Value) {
    // Writing into a Vec cannot fail for a serde_json::Value.
    let _ = serde_json::to_writer(&mut *out, v);
}

async fn delete_collection(
    cluster: &Cluster,
    def: Arc<ResourceDef>,
    ns: &str,
    query: &Query,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let sel = Selectors::parse(&def, query)?;
    let opts = delete_options(query, req).await?;
    let ns_opt = (!ns.is_empty()).then_some(ns);
    let mut items = Vec::new();
    for (_, obj) in cluster.store.scan(&prefix(&def, ns_opt)) {
        if !sel.is_empty() && !sel.matches(&served(&def, &obj)) {
            continue;
        }
        let t = Target {
            def: def.clone(),
            namespace: obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            name: obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        };
        match cluster.delete(&t, &opts).await {
            Ok(o) => items.push((*o).clone()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", def.kind),
            "apiVersion": def.api_version(),
            "metadata": {"resourceVersion": cluster.store.current_rv().to_string()},
            "items": items,
        }),
    ))
}

/// How one watcher sees an event after its selectors.
fn classify<'a>(
    def: &ResourceDef,
    ev: &'a WatchEvent,
    sel: &Selectors,
) -> Option<(&'static str, &'a Arc<Value>)> {
    let matches = |o: &Arc<Value>| sel.is_empty() || sel.matches(&served(def, o));
    let now = matches(&ev.object);
    match ev.kind {
        EventType::Deleted => now.then_some(("DELETED", &ev.object)),
        EventType::Added => now.then_some(("ADDED", &ev.object)),
        EventType::Modified => {
            let before = ev.prev.as_ref().is_some_and(matches);
            match (before, now) {
                (true, true) => Some(("MODIFIED", &ev.object)),
                (false, true) => Some(("ADDED", &ev.object)),
                (true, false) => Some(("DELETED", &ev.object)),
                (false, false) => None,
            }
        }
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    write_json(&mut out, object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

/// A watch event's object: the served object, or a one-row Table when the client asked for tables.
fn render(def: &ResourceDef, obj: &Arc<Value>, table: Option<IncludeObject>) -> Arc<Value> {
    let o = served(def, obj);
    match table {
        Some(include) => {
            let meta = json!({"resourceVersion": o.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
            Arc::new(table::table(
                &def.columns,
                &def.group,
                &def.kind,
                &[&o],
                include,
                meta,
                jiff::Timestamp::now(),
            ))
        }
        None => o,
    }
}

fn bookmark(def: &ResourceDef, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": meta}),
    )
}

fn watch(
    state: Arc<ServerState>,
    def: Arc<ResourceDef>,
    ns: Option<String>,
    query: &Query,
    table: Option<IncludeObject>,
) -> Result<Response<Body>> {
    let sel = Selectors::parse(&def, query)?;
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.get("sendInitialEvents").map(|v| v == "true");
    let rv = query.get("resourceVersion").unwrap_or("");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let from = match (send_initial, rv) {
        (Some(true), _) => {
            if !bookmarks {
                return Err(ApiError::invalid_field(
                    "meta.k8s.io",
                    "ListOptions",
                    "",
                    "allowWatchBookmarks",
                    "Required value: allowWatchBookmarks must be set to true when sendInitialEvents is set",
                ));
            }
            WatchFrom::Now { initial: true }
        }
        (_, "" | "0") => WatchFrom::Now {
            initial: send_initial != Some(false),
        },
        (_, rv) => WatchFrom::After(parse_rv(rv)?),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let prefix = prefix(&def, ns.as_deref());
    let start = state.cluster.store.watch(&prefix, from);
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let mut start = match start {
            Ok(s) => s,
            Err(e) => {
                // Expired versions are reported in-stream, which is what clients re-list on.
                let _ = tx.send(event_line("ERROR", &e.to_status())).await;
                return;
            }
        };
        // Initial events are all at or below `start.rv`; live events up to it are duplicates.
        let mut last = start.rv;
        for ev in &start.initial {
            if let Some((kind, obj)) = classify(&def, ev, &sel)
                && tx
                    .send(event_line(kind, &render(&def, obj, table)))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if send_initial == Some(true) && tx.send(bookmark(&def, start.rv, true)).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tokio::select! {
                ev = start.live.recv() => {
                    let ev = match ev {
                        Ok(ev) => ev,
                        // Fell behind or the store is gone: end the watch; the client resumes from its last version.
                        Err(_) => return,
                    };
                    if ev.rv <= last {
                        continue;
                    }
                    last = ev.rv;
                    if !ev.key.starts_with(&prefix) {
                        continue;
                    }
                    if let Some((kind, obj)) = classify(&def, &ev, &sel)
                        && tx.send(event_line(kind, &render(&def, obj, table))).await.is_err()
                    {
                        return;
                    }
                }
                _ = tick.tick(), if bookmarks => {
                    let current = state.cluster.store.current_rv();
                    // Every change up to `current` was broadcast before it became visible, so
                    // when nothing is queued this watcher has seen all of them.
                    if start.live.is_empty() && current > last {
                        last = current;
                    }
                    if tx.send(bookmark(&def, last, false)).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream = ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b)));
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_paths() {
        let p = parse_resource("", "v1", &["namespaces", "a", "configmaps", "x"])
            .expect("ok")
            .expect("some");
        assert_eq!(p.namespace.as_deref(), Some("a"));
        assert_eq!(p.plural, "configmaps");
        assert_eq!(p.name.as_deref(), Some("x"));
        let p = parse_resource("", "v1", &["namespaces", "a", "status"])
            .expect("ok")
            .expect("some");
        assert_eq!(p.plural, "namespaces");
        assert_eq!(p.name.as_deref(), Some("a"));
        assert_eq!(p.sub.as_deref(), Some("status"));
        let p = parse_resource("", "v1", &["namespaces", "a"])
            .expect("ok")
            .expect("some");
        assert_eq!(p.plural, "namespaces");
        assert!(p.namespace.is_none());
        let p = parse_resource("g", "v1", &["routes"])
            .expect("ok")
            .expect("some");
        assert!(p.name.is_none());
        assert!(
            parse_resource("g", "v1", &["a", "b", "c", "d"])
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn event_lines_are_json() {
        let b = event_line("ADDED", &json!({"a": 1}));
        let v: Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(v["type"], "ADDED");
        assert!(b.ends_with(b"\n"));
    }
}
