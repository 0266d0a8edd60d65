//! Prometheus metrics of one process: a [`Metrics`] owns the `prometheus-client` registry and
//! every metric family (`docs/metrics.md` lists them). `app.rs` creates one and shares it as an
//! `Arc<Metrics>` with the proxy (requests, authentication failures), the identity service (token
//! requests), the controller (table publications, reconcile errors) and the admin listener,
//! which alone serves it (`GET /metrics`).
//!
//! Label values are bounded: routes come from the routing table, everything else is a
//! `&'static str` chosen by the code. Nothing a client sends becomes a label value, so no token,
//! secret or client id ever does.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::identity::token::GrantType;
use crate::routing::route::RouteId;

/// The `Content-Type` of [`Metrics::encode`]: the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `route` label of a request that matched no route.
pub const NO_ROUTE: &str = "-";
/// The `route` label of a request to the authenticate host (the identity endpoints).
pub const IDENTITY_ROUTE: &str = "identity";

/// The `controller` label of the credential reconciler.
pub const CREDENTIALS: &str = "credentials";
/// The `controller` label of the signing-key Secret's upkeep.
pub const SIGNING_KEYS: &str = "signing_keys";
/// The `controller` label of the status and Event writer of Routes and Ingresses.
pub const STATUS: &str = "status";

/// The `outcome` of a token request that issued a token.
const ISSUED: &str = "issued";

/// Upper bounds of `portcullis_http_request_duration_seconds`: 100µs to 30s, about three
/// buckets per decade, so the sub-millisecond overhead of the proxy stays visible.
const HTTP_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Upper bounds of `portcullis_table_build_seconds`: 1ms to 10s.
const TABLE_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabel {
    grant: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// The series of one route, held so a request finds its counter and histogram with one map
/// lookup by `&str` and without allocating.
struct RouteSeries {
    duration: Histogram,
    /// The request counter per status code; a route answers with a handful of codes.
    statuses: Vec<(u16, Counter)>,
}

impl RouteSeries {
    fn counter(&self, status: u16) -> Option<&Counter> {
        self.statuses
            .iter()
            .find_map(|(s, c)| (*s == status).then_some(c))
    }
}

/// A namespace's route series by route name.
type ByName = HashMap<Box<str>, RouteSeries>;

/// Every metric of the process and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabel>,
    /// By namespace, then name; the fixed labels ([`NO_ROUTE`], [`IDENTITY_ROUTE`]) live under
    /// the empty namespace. Two levels, so a [`RouteId`] is looked up without building a string.
    http_series: RwLock<HashMap<Box<str>, ByName>>,
    authentication_failures: Family<ReasonLabel, Counter>,
    tokens_issued: Family<GrantLabel, Counter>,
    token_requests: Family<OutcomeLabel, Counter>,
    table_generation: Gauge,
    table_build: Histogram,
    table_routes: Gauge,
    reconcile_errors: Family<ControllerLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every Portcullis metric registered and `portcullis_build_info` set.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        // Counters are registered without `_total`: the encoder appends it.
        registry.register(
            "portcullis_http_requests",
            "HTTP requests answered, by route (namespace/name) and status code",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<RouteLabel> =
            Family::new_with_constructor(|| Histogram::new(HTTP_BUCKETS));
        registry.register(
            "portcullis_http_request_duration_seconds",
            "Time from the request head to the response head, by route",
            http_duration.clone(),
        );
        let authentication_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "portcullis_authentication_failures",
            "Requests on routes whose credential was refused, by reason",
            authentication_failures.clone(),
        );
        let tokens_issued = Family::<GrantLabel, Counter>::default();
        registry.register(
            "portcullis_tokens_issued",
            "Access tokens issued by the token endpoint, by grant type",
            tokens_issued.clone(),
        );
        let token_requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "portcullis_token_requests",
            "Token endpoint requests, by outcome (issued, or the OAuth error code)",
            token_requests.clone(),
        );
        let table_generation = Gauge::default();
        registry.register(
            "portcullis_table_generation",
            "Generation of the live routing table",
            table_generation.clone(),
        );
        let table_build = Histogram::new(TABLE_BUCKETS);
        registry.register(
            "portcullis_table_build_seconds",
            "Time to compile a routing table from the watched objects",
            table_build.clone(),
        );
        let table_routes = Gauge::default();
        registry.register(
            "portcullis_table_routes",
            "HTTP routes in the live routing table",
            table_routes.clone(),
        );
        let reconcile_errors = Family::<ControllerLabel, Counter>::default();
        registry.register(
            "portcullis_reconcile_errors",
            "Failed Kubernetes API writes and reconcile passes, by controller",
            reconcile_errors.clone(),
        );
        // Series whose label values are known up front start at zero, so `rate()` and
        // `increase()` see their first event.
        let _ = tokens_issued.get_or_create(&GrantLabel {
            grant: GrantType::ClientCredentials.as_str(),
        });
        let _ = token_requests.get_or_create(&OutcomeLabel { outcome: ISSUED });
        for controller in [CREDENTIALS, SIGNING_KEYS, STATUS] {
            let _ = reconcile_errors.get_or_create(&ControllerLabel { controller });
        }
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "portcullis_build_info",
            "Always 1; the version label is the running Portcullis version",
            build_info,
        );
        Self {
            registry,
            http_requests,
            http_duration,
            http_series: RwLock::new(HashMap::new()),
            authentication_failures,
            tokens_issued,
            token_requests,
            table_generation,
            table_build,
            table_routes,
            reconcile_errors,
        }
    }

    /// Records one answered request: `route` is the serving route's `namespace/name`,
    /// [`NO_ROUTE`] or [`IDENTITY_ROUTE`]; `status` the response status code; `latency` the time
    /// from the request head to the response head. Allocates only the first time a
    /// (route, status) pair is seen.
    pub fn http_request(&self, route: &str, status: u16, latency: Duration) {
        let (namespace, name) = route.split_once('/').unwrap_or(("", route));
        self.record_request(namespace, name, status, latency);
    }

    /// [`Metrics::http_request`] for the route `id` (label `namespace/name`; a Route and an
    /// Ingress of the same namespace and name share their series).
    pub fn http_route_request(&self, id: &RouteId, status: u16, latency: Duration) {
        self.record_request(&id.namespace, &id.name, status, latency);
    }

    fn record_request(&self, namespace: &str, name: &str, status: u16, latency: Duration) {
        {
            let series = self
                .http_series
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(s) = series.get(namespace).and_then(|names| names.get(name))
                && let Some(counter) = s.counter(status)
            {
                counter.inc();
                s.duration.observe(latency.as_secs_f64());
                return;
            }
        }
        let label: Arc<str> = if namespace.is_empty() {
            name.into()
        } else {
            format!("{namespace}/{name}").into()
        };
        let mut series = self
            .http_series
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let s = series
            .entry(namespace.into())
            .or_default()
            .entry(name.into())
            .or_insert_with(|| RouteSeries {
                duration: self.http_duration.get_or_create_owned(&RouteLabel {
                    route: Arc::clone(&label),
                }),
                statuses: Vec::new(),
            });
        if s.counter(status).is_none() {
            let counter = self.http_requests.get_or_create_owned(&HttpLabels {
                route: label,
                status,
            });
            s.statuses.push((status, counter));
        }
        if let Some(counter) = s.counter(status) {
            counter.inc();
        }
        s.duration.observe(latency.as_secs_f64());
    }

    /// Records a request whose credential was refused on a route, for `reason` (`missing`,
    /// `malformed`, `expired`, `bad_signature`, `wrong_type`, `unknown_key`, `revoked`, ...).
    pub fn authentication_failure(&self, reason: &'static str) {
        self.authentication_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Records an access token issued for `grant` (the `grant_type` wire value).
    pub fn token_issued(&self, grant: &'static str) {
        self.tokens_issued
            .get_or_create(&GrantLabel { grant })
            .inc();
        self.token_requests
            .get_or_create(&OutcomeLabel { outcome: ISSUED })
            .inc();
    }

    /// Records a token request refused with the OAuth error `code` (`invalid_client`, ...).
    pub fn token_refused(&self, code: &'static str) {
        self.token_requests
            .get_or_create(&OutcomeLabel { outcome: code })
            .inc();
    }

    /// Records a published routing table: its generation, its number of HTTP routes and how
    /// long its compile took.
    pub fn table_published(&self, generation: u64, routes: usize, build: Duration) {
        self.table_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.table_routes
            .set(i64::try_from(routes).unwrap_or(i64::MAX));
        self.table_build.observe(build.as_secs_f64());
    }

    /// Records a failed reconcile step or Kubernetes API write of `controller` ([`CREDENTIALS`],
    /// [`SIGNING_KEYS`], [`STATUS`]).
    pub fn reconcile_error(&self, controller: &'static str) {
        self.reconcile_errors
            .get_or_create(&ControllerLabel { controller })
            .inc();
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn requests_are_counted_by_route_and_status() {
        let m = Metrics::new();
        m.http_request("team-a/billing", 200, Duration::from_micros(300));
        m.http_request("team-a/billing", 200, Duration::from_millis(2));
        m.http_request("team-a/billing", 403, Duration::from_micros(50));
        m.http_request(NO_ROUTE, 404, Duration::from_micros(20));
        let id = RouteId {
            kind: crate::routing::route::SourceKind::Ingress,
            namespace: "team-a".into(),
            name: "billing".into(),
        };
        m.http_route_request(&id, 200, Duration::from_micros(300));
        let text = m.encode();
        let requests = |labels: &str| {
            sample(
                &text,
                &format!("portcullis_http_requests_total{{{labels}}}"),
            )
        };
        assert_eq!(
            requests(r#"route="team-a/billing",status="200""#),
            Some("3")
        );
        assert_eq!(
            requests(r#"route="team-a/billing",status="403""#),
            Some("1")
        );
        assert_eq!(requests(r#"route="-",status="404""#), Some("1"));
        let bucket = |le: &str| {
            sample(
                &text,
                &format!(
                    r#"portcullis_http_request_duration_seconds_bucket{{le="{le}",route="team-a/billing"}}"#
                ),
            )
        };
        assert_eq!(bucket("0.0001"), Some("1"));
        assert_eq!(bucket("0.0005"), Some("3"));
        assert_eq!(bucket("0.0025"), Some("4"));
        assert_eq!(bucket("+Inf"), Some("4"));
        assert_eq!(
            sample(
                &text,
                r#"portcullis_http_request_duration_seconds_count{route="team-a/billing"}"#
            ),
            Some("4")
        );
        assert!(text.contains("# TYPE portcullis_http_requests counter"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn identity_controller_and_auth_families_carry_their_labels() {
        let m = Metrics::new();
        m.authentication_failure("expired");
        m.authentication_failure("expired");
        m.token_issued("client_credentials");
        m.token_refused("invalid_client");
        m.table_published(7, 42, Duration::from_millis(3));
        m.reconcile_error("status");
        let text = m.encode();
        for (series, value) in [
            (
                r#"portcullis_authentication_failures_total{reason="expired"}"#,
                "2",
            ),
            (
                r#"portcullis_tokens_issued_total{grant="client_credentials"}"#,
                "1",
            ),
            (r#"portcullis_token_requests_total{outcome="issued"}"#, "1"),
            (
                r#"portcullis_token_requests_total{outcome="invalid_client"}"#,
                "1",
            ),
            ("portcullis_table_generation", "7"),
            ("portcullis_table_routes", "42"),
            (r#"portcullis_table_build_seconds_bucket{le="0.005"}"#, "1"),
            ("portcullis_table_build_seconds_count", "1"),
            (
                r#"portcullis_reconcile_errors_total{controller="status"}"#,
                "1",
            ),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        let version = format!(
            r#"portcullis_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(sample(&text, &version), Some("1"));
    }

    #[test]
    fn known_series_start_at_zero_and_empty_families_are_left_out() {
        let text = Metrics::new().encode();
        for series in [
            r#"portcullis_tokens_issued_total{grant="client_credentials"}"#,
            r#"portcullis_token_requests_total{outcome="issued"}"#,
            r#"portcullis_reconcile_errors_total{controller="credentials"}"#,
            r#"portcullis_reconcile_errors_total{controller="signing_keys"}"#,
            r#"portcullis_reconcile_errors_total{controller="status"}"#,
            "portcullis_table_generation",
        ] {
            assert_eq!(sample(&text, series), Some("0"), "{series} in\n{text}");
        }
        // prometheus-client leaves out a family without series.
        assert!(!text.contains("portcullis_http_requests"));
        assert!(!text.contains("portcullis_authentication_failures"));
    }

    /// Not an assertion: prints what one request costs the proxy, single-threaded and with
    /// eight threads on one route (`cargo nextest run metrics::tests::request_cost
    /// --no-capture`, release build for real figures; `cargo bench --bench metrics` for
    /// criterion's).
    #[test]
    fn request_cost() {
        let m = Arc::new(Metrics::new());
        let n: u32 = 200_000;
        let started = std::time::Instant::now();
        for i in 0..n {
            m.http_request(
                "team-a/billing",
                200,
                Duration::from_micros(u64::from(i % 5000)),
            );
        }
        let single = started.elapsed() / n;
        let threads = 8;
        let started = std::time::Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                let m = Arc::clone(&m);
                s.spawn(move || {
                    for i in 0..n {
                        m.http_request("team-a/billing", 200, Duration::from_micros(u64::from(i)));
                    }
                });
            }
        });
        let contended = started.elapsed() / (n * threads);
        println!(
            "http_request: {single:?} per call on one thread, {contended:?} per call (wall / calls) with {threads} threads on one route"
        );
    }
}
