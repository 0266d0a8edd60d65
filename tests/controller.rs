//! The controller against the embedded API: objects applied through the Kubernetes API reach the
//! live routing table, and their status and Events come back.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::eventually;
use common::fixture::Fixture;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::DeleteParams;
use portcullis::config::Settings;
use portcullis::routing::upstream::Target;
use serde_json::json;

#[tokio::test]
async fn a_route_goes_live_gets_its_status_and_leaves() {
    let f = Fixture::start().await;
    let before = f.live.generation();
    f.route(
        "team-a",
        "billing",
        json!({"from": "https://billing.localhost/api", "to": [{"url": "http://127.0.0.1:9000"}], "allowAnyAuthenticatedUser": true}),
    )
    .await;
    f.served("billing.localhost", "/api/x", Some("Route team-a/billing"))
        .await;
    assert!(f.live.generation() > before);
    // Every published table is in the metrics: its generation, its routes, one build each.
    let served = f.live.generation();
    eventually(10, "the table metrics", || async {
        let text = f.metrics.encode();
        let sample = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
                .parse::<f64>()
                .ok()
        };
        let generation = sample("portcullis_table_generation")?;
        (generation >= served as f64
            && sample("portcullis_table_routes")? == 1.0
            && sample("portcullis_table_build_seconds_count")? == generation)
            .then_some(())
    })
    .await;
    assert_eq!(
        f.condition("team-a", "billing", "Ready", "True").await,
        "Ready"
    );
    let r = f.routes("team-a").get("billing").await.unwrap();
    let status = r.status.unwrap();
    assert_eq!(status.url.as_deref(), Some("https://billing.localhost/api"));
    assert_eq!(status.observed_generation, Some(1));

    // A spec change is compiled and observed.
    f.route(
        "team-a",
        "billing",
        json!({"from": "https://billing.localhost/v2", "to": [{"url": "http://127.0.0.1:9000"}], "allowAnyAuthenticatedUser": true}),
    )
    .await;
    f.served("billing.localhost", "/v2", Some("Route team-a/billing"))
        .await;
    f.served("billing.localhost", "/api/x", None).await;
    let routes = f.routes("team-a");
    eventually(10, "observedGeneration 2", || {
        let routes = routes.clone();
        async move {
            let s = routes.get("billing").await.ok()?.status?;
            (s.observed_generation == Some(2)
                && s.url.as_deref() == Some("https://billing.localhost/v2"))
            .then_some(())
        }
    })
    .await;

    routes
        .delete("billing", &DeleteParams::default())
        .await
        .unwrap();
    f.served("billing.localhost", "/v2", None).await;
    f.stop().await;
}

#[tokio::test]
async fn one_bad_route_does_not_disturb_the_others_and_says_why() {
    let f = Fixture::start().await;
    let to = json!([{"url": "http://127.0.0.1:9000"}]);
    f.route(
        "team-a",
        "first",
        json!({"from": "http://shared.localhost", "to": to, "allowAnyAuthenticatedUser": true}),
    )
    .await;
    f.served("shared.localhost", "/", Some("Route team-a/first"))
        .await;
    // Creation times have a one-second resolution: make sure the second one is younger.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.route(
        "team-b",
        "second",
        json!({"from": "http://shared.localhost", "to": to, "allowAnyAuthenticatedUser": true}),
    )
    .await;
    f.route(
        "team-a",
        "metadata",
        json!({"from": "http://m.localhost", "to": [{"url": "http://169.254.169.254/"}], "allowAnyAuthenticatedUser": true}),
    )
    .await;
    f.route(
        "team-a",
        "cel",
        json!({"from": "http://cel.localhost", "to": to, "policy": {"allow": {"or": [{"expression": "request.method =="}]}}}),
    )
    .await;
    f.route(
        "team-a",
        "auth",
        json!({"from": "http://auth.localhost", "to": to, "allowAnyAuthenticatedUser": true}),
    )
    .await;

    assert_eq!(
        f.condition("team-b", "second", "Accepted", "False").await,
        "Conflict"
    );
    assert_eq!(
        f.condition("team-a", "metadata", "ResolvedRefs", "False")
            .await,
        "BackendNotAllowed"
    );
    assert_eq!(
        f.condition("team-a", "cel", "Accepted", "False").await,
        "InvalidPolicy"
    );
    assert_eq!(
        f.condition("team-a", "auth", "Accepted", "False").await,
        "ReservedHost"
    );
    // The older route keeps its host: no flapping.
    f.served("shared.localhost", "/", Some("Route team-a/first"))
        .await;
    assert_eq!(
        f.condition("team-a", "first", "Ready", "True").await,
        "Ready"
    );
    f.served("cel.localhost", "/", None).await;

    // Each problem is an Event on its object, as `kubectl describe` shows.
    let events = f.wait_events("team-b", "second").await;
    assert_eq!(events[0].reason.as_deref(), Some("Conflict"));
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert!(
        events[0]
            .message
            .as_deref()
            .unwrap()
            .contains("Route team-a/first")
    );
    let events = f.wait_events("team-a", "metadata").await;
    assert_eq!(events[0].reason.as_deref(), Some("BackendNotAllowed"));

    // Removing the winner hands the host to the next oldest.
    f.routes("team-a")
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    f.served("shared.localhost", "/", Some("Route team-b/second"))
        .await;
    assert_eq!(
        f.condition("team-b", "second", "Accepted", "True").await,
        "Accepted"
    );
    f.stop().await;
}

#[tokio::test]
async fn routes_for_people_say_when_sign_in_is_unavailable_and_the_others_do_not() {
    let f = Fixture::start().await;
    let to = json!([{"url": "http://127.0.0.1:9000"}]);
    f.route(
        "team-a",
        "people",
        json!({"from": "http://people.localhost", "to": to,
               "policy": {"allow": {"or": [{"email": {"is": "alice@example.com"}}]}}}),
    )
    .await;
    f.route(
        "team-a",
        "machines",
        json!({"from": "http://machines.localhost", "to": to,
               "policy": {"allow": {"or": [{"serviceAccount": {"is": "team-a/bot"}}]}}}),
    )
    .await;
    f.route(
        "team-a",
        "public",
        json!({"from": "http://public.localhost", "to": to, "allowPublicUnauthenticatedAccess": true}),
    )
    .await;
    // A route for machines that reads the identity provider's tokens needs the provider too.
    f.route(
        "team-a",
        "idp-tokens",
        json!({"from": "http://idp-tokens.localhost", "to": to,
               "bearerTokenFormat": "idp_access_token",
               "policy": {"allow": {"or": [{"claim/sub": {"is": "ci-bot"}}]}}}),
    )
    .await;
    assert_eq!(
        f.condition("team-a", "people", "ResolvedRefs", "True")
            .await,
        "ResolvedRefs"
    );

    f.sign_in.send_replace(Some(
        "Secret portcullis-system/portcullis-idp not found".into(),
    ));
    assert_eq!(
        f.condition("team-a", "people", "ResolvedRefs", "False")
            .await,
        "IdentityProviderUnavailable"
    );
    // The route still serves (tokens work); only people cannot sign in.
    assert_eq!(
        f.condition("team-a", "people", "Ready", "True").await,
        "ReadyWithUnresolvedRefs"
    );
    f.served("people.localhost", "/", Some("Route team-a/people"))
        .await;
    assert_eq!(
        f.condition("team-a", "idp-tokens", "ResolvedRefs", "False")
            .await,
        "IdentityProviderUnavailable"
    );
    let events = f.wait_events("team-a", "people").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("IdentityProviderUnavailable"))
    );
    for other in ["machines", "public"] {
        assert_eq!(
            f.condition("team-a", other, "ResolvedRefs", "True").await,
            "ResolvedRefs",
            "{other}"
        );
    }

    f.sign_in.send_replace(None);
    assert_eq!(
        f.condition("team-a", "people", "ResolvedRefs", "True")
            .await,
        "ResolvedRefs"
    );
    f.stop().await;
}

#[tokio::test]
async fn upstreams_follow_endpoint_slices() {
    let f = Fixture::start().await;
    f.apply::<Service>(
        "team-a",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "team-a"},
               "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
    )
    .await;
    let slice = |ready: bool| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "echo-1", "namespace": "team-a", "labels": {"kubernetes.io/service-name": "echo"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": ready}}],
               "ports": [{"name": "http", "port": 8080}]})
    };
    f.route(
        "team-a",
        "echo",
        json!({"from": "http://echo.localhost", "to": [{"service": {"name": "echo", "port": 80}}], "allowAnyAuthenticatedUser": true}),
    )
    .await;
    // No EndpointSlice yet: the Service's DNS name.
    let targets = |f: &Fixture| -> Vec<String> {
        let t = f.live.load();
        let Some((_, r)) = t.find("echo.localhost", "/") else {
            return vec!["<none>".into()];
        };
        r.backends
            .iter()
            .flat_map(|b| &b.upstreams)
            .map(|u| match &u.target {
                Target::Addr(a) => a.to_string(),
                Target::Name { host, port } => format!("{host}:{port}"),
            })
            .collect()
    };
    eventually(10, "dns fallback", || async {
        (targets(&f) == ["echo.team-a.svc:80"]).then_some(())
    })
    .await;
    f.apply::<EndpointSlice>("team-a", slice(true)).await;
    eventually(10, "ready endpoint", || async {
        (targets(&f) == ["10.0.0.7:8080"]).then_some(())
    })
    .await;
    assert_eq!(
        f.condition("team-a", "echo", "Ready", "True").await,
        "Ready"
    );
    f.apply::<EndpointSlice>("team-a", slice(false)).await;
    eventually(10, "no ready endpoint", || async {
        targets(&f).is_empty().then_some(())
    })
    .await;
    assert_eq!(
        f.condition("team-a", "echo", "Ready", "False").await,
        "NoReadyEndpoints"
    );
    f.stop().await;
}

#[tokio::test]
async fn ingresses_of_our_class_are_served_and_their_problems_are_events() {
    let f = Fixture::start().await;
    let ingress = |name: &str, host: &str, annotations: serde_json::Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": name, "namespace": "team-a", "annotations": annotations},
               "spec": {"ingressClassName": "portcullis", "rules": [{"host": host, "http": {"paths": [
                   {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    };
    f.apply::<Ingress>(
        "team-a",
        ingress(
            "good",
            "web.localhost",
            json!({"portcullis.dev/allow-any-authenticated-user": "true"}),
        ),
    )
    .await;
    f.apply::<Ingress>(
        "team-a",
        ingress(
            "bad",
            "bad.localhost",
            json!({"portcullis.dev/alow-websockets": "true"}),
        ),
    )
    .await;
    let mut other = ingress("nginx", "nginx.localhost", json!({}));
    other["spec"]["ingressClassName"] = json!("nginx");
    f.apply::<Ingress>("team-a", other).await;

    f.served("web.localhost", "/", Some("Ingress team-a/good"))
        .await;
    let events = f.wait_events("team-a", "bad").await;
    assert_eq!(events[0].reason.as_deref(), Some("InvalidAnnotation"));
    assert!(
        events[0]
            .message
            .as_deref()
            .unwrap()
            .contains("portcullis.dev/alow-websockets")
    );
    // The missing Service is reported too, on the served Ingress.
    let events = f.wait_events("team-a", "good").await;
    assert_eq!(events[0].reason.as_deref(), Some("BackendNotFound"));
    assert!(f.live.load().find("bad.localhost", "/").is_none());
    assert!(f.live.load().find("nginx.localhost", "/").is_none());
    // Ingresses of our class carry the proxy's address; others are left alone.
    let ingresses: Api<Ingress> = Api::namespaced(f.client.clone(), "team-a");
    eventually(10, "loadBalancer address", || {
        let ingresses = ingresses.clone();
        async move {
            let lb = ingresses.get("good").await.ok()?.status?.load_balancer?;
            (lb.ingress?[0].ip.as_deref() == Some("127.0.0.1")).then_some(())
        }
    })
    .await;
    let nginx = ingresses.get("nginx").await.unwrap();
    assert!(
        nginx
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .is_none()
    );
    f.stop().await;
}

#[tokio::test]
async fn status_is_not_written_again_when_nothing_changed() {
    let f = Fixture::start().await;
    let to = json!([{"url": "http://127.0.0.1:9000"}]);
    f.route(
        "team-a",
        "steady",
        json!({"from": "http://steady.localhost", "to": to, "allowAnyAuthenticatedUser": true}),
    )
    .await;
    f.condition("team-a", "steady", "Ready", "True").await;
    let version = f
        .routes("team-a")
        .get("steady")
        .await
        .unwrap()
        .metadata
        .resource_version;
    // Unrelated changes publish new tables; the steady route's status stays as it was. (A
    // rewrite of the same status would keep the version, as in Kubernetes: that no write is
    // sent at all is unit-tested in `status.rs`; this catches rewrites with new timestamps.)
    for i in 0..3 {
        let generation = f.live.generation();
        f.route(
            "team-b",
            &format!("other-{i}"),
            json!({"from": format!("http://other-{i}.localhost"), "to": to, "allowAnyAuthenticatedUser": true}),
        )
        .await;
        f.live
            .wait_for(generation + 1, Duration::from_secs(10))
            .await
            .expect("a new table");
        f.condition("team-b", &format!("other-{i}"), "Ready", "True")
            .await;
    }
    let after = f
        .routes("team-a")
        .get("steady")
        .await
        .unwrap()
        .metadata
        .resource_version;
    assert_eq!(version, after);
    f.stop().await;
}

#[tokio::test]
async fn only_watched_namespaces_are_served() {
    let f = Fixture::with_settings(Settings {
        allow_loopback_upstreams: true,
        watch_namespaces: vec!["team-a".into()],
        ..Settings::default()
    })
    .await;
    let to = json!([{"url": "http://127.0.0.1:9000"}]);
    f.route(
        "team-b",
        "outside",
        json!({"from": "http://outside.localhost", "to": to, "allowAnyAuthenticatedUser": true}),
    )
    .await;
    f.route(
        "team-a",
        "inside",
        json!({"from": "http://inside.localhost", "to": to, "allowAnyAuthenticatedUser": true}),
    )
    .await;
    f.served("inside.localhost", "/", Some("Route team-a/inside"))
        .await;
    assert!(f.live.load().find("outside.localhost", "/").is_none());
    let outside = f.routes("team-b").get("outside").await.unwrap();
    assert!(
        outside.status.is_none(),
        "routes outside watchNamespaces are left alone"
    );
    f.stop().await;
}
