//! Conversion of small manifests; the black-box tests (`tests/convert.rs`) run the binary on
//! every input kind and the seeds' manifests.

use super::model::duration;
use super::*;

#[test]
fn durations_of_the_gateway_api_and_envoy() {
    assert_eq!(duration("10s").as_deref(), Some("10s"));
    assert_eq!(duration("1h30m").as_deref(), Some("5400s"));
    assert_eq!(duration("500ms").as_deref(), Some("500ms"));
    assert_eq!(duration("1.5s").as_deref(), Some("1500ms"));
    assert_eq!(duration("600").as_deref(), Some("600s"));
    assert_eq!(duration("0s"), None);
    assert_eq!(duration("ten"), None);
    assert_eq!(duration("5d"), None);
}

fn convert_text(text: &str) -> Result<String, ConvertError> {
    let dir = std::env::temp_dir().join(format!("tether-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!(
        "{:x}.yaml",
        text.len() * 31 + text.bytes().map(usize::from).sum::<usize>()
    ));
    std::fs::write(&file, text).unwrap();
    let out = convert(&[file.as_path()], &Options::default());
    let _ = std::fs::remove_file(&file);
    out
}

#[test]
fn an_httproute_rule_is_a_route_to_discovered_clusters() {
    let out = convert_text(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: web}
spec:
  parentRefs: [{name: eg}]
  hostnames: [shop.example.com]
  rules:
    - matches: [{path: {type: PathPrefix, value: /cart}}]
      backendRefs:
        - {name: cart, port: 8080, weight: 90}
        - {name: cart-canary, port: 8080, weight: 10}
      sessionPersistence:
        sessionName: cart-session
        type: Cookie
        absoluteTimeout: 1h
        idleTimeout: 10m
        cookieConfig: {lifetimeType: Permanent}
",
    )
    .unwrap();
    for line in [
        "name: \"cart.web.svc.cluster.local\", port: 8080",
        "- {cluster: cart-8080, weight: 90}",
        "- {cluster: cart-canary-8080, weight: 10}",
        "hostnames: [\"shop.example.com\"]",
        "path: {type: PathPrefix, value: \"/cart\"}",
        "name: \"cart-session\"",
        "absolute_timeout: 3600s",
        "idle_timeout: 600s",
        "lifetime_type: Permanent",
        "# not converted: ",
        "Gateway `eg` is not among the inputs",
    ] {
        assert!(out.contains(line), "`{line}` not in:\n{out}");
    }
}

#[test]
fn broken_manifests_name_file_document_and_key() {
    let err = convert_text("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules:\n    - backendRefs: [{name: a, port: eighty}]\n")
        .unwrap_err();
    assert!(err.0.contains("(document 1, HTTPRoute `r`): spec.rules[0].backendRefs[0].port: expected a whole number"), "{err}");
    let err = convert_text("kind: HTTPRoute\n  bad: [\n").unwrap_err();
    assert!(err.0.contains("not valid YAML"), "{err}");
    let err = convert_text("kind: Service\nmetadata: {name: s}\n").unwrap_err();
    assert!(err.0.contains("nothing to convert"), "{err}");
}
