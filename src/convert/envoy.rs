//! An Envoy config holding the `stateful_session` HTTP filter (cookie or header session state,
//! `strict`): a route taking every request with that session persistence, to the Envoy
//! config's clusters with fixed endpoints when it has them.

use serde_yaml::Value;

use super::model::{duration, Backends, Cluster, Model, Route, Session};
use super::read::Doc;
use super::ConvertError;

const FILTER: &str = "envoy.filters.http.stateful_session";

/// Whether `v` holds a stateful session filter anywhere.
pub fn is_envoy(v: &Value) -> bool {
    let mut found = false;
    walk(v, &mut |m| found |= is_filter(m));
    found
}

fn is_filter(m: &Value) -> bool {
    m["name"].as_str() == Some(FILTER)
        || m["typed_config"]["@type"]
            .as_str()
            .is_some_and(|t| t.ends_with(".StatefulSession"))
}

fn walk(v: &Value, f: &mut dyn FnMut(&Value)) {
    match v {
        Value::Mapping(m) => {
            f(v);
            for (_, child) in m {
                walk(child, f);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| walk(i, f)),
        _ => {}
    }
}

/// The routes of the config's stateful session filters.
pub fn config(doc: &Doc, model: &mut Model) -> Result<(), ConvertError> {
    let mut filters = Vec::new();
    walk(&doc.value, &mut |m| {
        if is_filter(m) {
            filters.push(m.clone());
        }
    });
    let clusters = envoy_clusters(doc, model)?;
    for (i, filter) in filters.iter().enumerate() {
        let at = format!("stateful_session filter {}", i + 1);
        let config = &filter["typed_config"];
        let state = &config["session_state"]["typed_config"];
        let kind = state["@type"].as_str().unwrap_or_default();
        let session = if kind.ends_with(".CookieBasedSessionState") {
            let cookie = &state["cookie"];
            let name = doc.req_str(&cookie["name"], &format!("{at}.session_state.cookie.name"))?;
            let ttl = doc.opt_str(&cookie["ttl"], &format!("{at}.session_state.cookie.ttl"))?;
            let ttl = ttl.and_then(duration);
            Session {
                header: false,
                name: name.to_string(),
                permanent: ttl.is_some(),
                absolute_timeout: ttl,
                idle_timeout: None,
                path: doc
                    .opt_str(&cookie["path"], &format!("{at}.session_state.cookie.path"))?
                    .map(str::to_string),
                strict: false,
            }
        } else if kind.ends_with(".HeaderBasedSessionState") {
            Session {
                header: true,
                name: doc
                    .req_str(&state["name"], &format!("{at}.session_state.name"))?
                    .to_string(),
                permanent: false,
                absolute_timeout: None,
                idle_timeout: None,
                path: None,
                strict: false,
            }
        } else {
            return Err(doc.err(
                &format!("{at}.session_state"),
                "expected a cookie or header session state",
            ));
        };
        let strict = config["strict"].as_bool().unwrap_or(false);
        let listener = model.default_listener();
        let backends = match &clusters[..] {
            [] => {
                let cluster = model.service_cluster("backend", "default", 80, false);
                model.note(format!(
                    "{}: the config has no cluster with endpoints: cluster `{cluster}` discovers backend.default.svc.cluster.local:80; change it",
                    doc.origin()
                ));
                vec![(cluster, 1)]
            }
            found => found.iter().map(|c| (c.clone(), 1)).collect(),
        };
        let name = model.route_name("envoy-session");
        model.routes.push(Route {
            name,
            listeners: vec![listener],
            hostnames: Vec::new(),
            matches: Vec::new(),
            backends,
            session: Some(Session { strict, ..session }),
            origin: format!("{} {at}", doc.origin()),
        });
    }
    Ok(())
}

/// The config's clusters with fixed endpoints (`load_assignment`), as tether clusters.
fn envoy_clusters(doc: &Doc, model: &mut Model) -> Result<Vec<String>, ConvertError> {
    let mut made = Vec::new();
    let mut clusters = Vec::new();
    walk(&doc.value, &mut |m| {
        if let Some(list) = m["clusters"].as_sequence() {
            clusters.extend(list.iter().cloned());
        }
    });
    for (i, c) in clusters.iter().enumerate() {
        let name = doc.req_str(&c["name"], &format!("clusters[{i}].name"))?;
        let mut addresses = Vec::new();
        walk(&c["load_assignment"], &mut |m| {
            let socket = &m["socket_address"];
            if let (Some(address), Some(port)) =
                (socket["address"].as_str(), socket["port_value"].as_u64())
            {
                addresses.push(if address.contains(':') {
                    format!("[{address}]:{port}")
                } else {
                    format!("{address}:{port}")
                });
            }
        });
        if addresses.is_empty() {
            model.note(format!(
                "{}: cluster `{name}` has no fixed endpoints",
                doc.origin()
            ));
            continue;
        }
        let taken: Vec<&str> = model.clusters.iter().map(|c| c.name.as_str()).collect();
        let cluster = Model::unique(name, &taken);
        model.clusters.push(Cluster {
            name: cluster.clone(),
            backends: Backends::Static(addresses),
            protocol: None,
        });
        made.push(cluster);
    }
    Ok(made)
}
