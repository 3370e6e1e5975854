//! Gateway API manifests: `Gateway` listeners become listeners; each `HTTPRoute` or
//! `GRPCRoute` rule becomes a route, its `backendRefs` clusters found by DNS, its
//! `sessionPersistence` (either shape: `sessionName`/`cookieConfig`, or `cookie`/`header`)
//! the route's session persistence.

use serde_yaml::Value;

use super::model::{duration, sanitize, Listener, Match, Model, Route, Session};
use super::read::Doc;
use super::ConvertError;

/// A `Gateway`: one listener per listener of it.
pub fn gateway(doc: &Doc, model: &mut Model) -> Result<(), ConvertError> {
    let gw = doc.name().to_string();
    let listeners = doc.list(&doc.value["spec"]["listeners"], "spec.listeners")?;
    if listeners.is_empty() {
        return Err(doc.err("spec.listeners", "no listener"));
    }
    for (i, l) in listeners.iter().enumerate() {
        let at = |key: &str| format!("spec.listeners[{i}].{key}");
        let name = doc.req_str(&l["name"], &at("name"))?;
        let port = doc
            .opt_u64(&l["port"], &at("port"))?
            .ok_or_else(|| doc.err(&at("port"), "missing"))?;
        let port = u16::try_from(port)
            .map_err(|_| doc.err(&at("port"), format!("{port} is not a port")))?;
        let protocol = doc
            .opt_str(&l["protocol"], &at("protocol"))?
            .unwrap_or("HTTP");
        let taken: Vec<&str> = model.listeners.iter().map(|l| l.name.as_str()).collect();
        let listener_name = Model::unique(&format!("{gw}-{name}"), &taken);
        match protocol {
            "HTTP" => {}
            "HTTPS" | "TLS" => model.note(format!(
                "{}: listener `{name}` is {protocol}: made a plain listener; add `tls.certificates` to listener `{listener_name}` with the files of the certificateRefs Secrets",
                doc.origin()
            )),
            other => model.note(format!(
                "{}: listener `{name}` of protocol {other}: made a plain HTTP listener",
                doc.origin()
            )),
        }
        if let Some(host) = doc.opt_str(&l["hostname"], &at("hostname"))? {
            model.note(format!(
                "{}: listener `{name}` hostname `{host}`: tether listeners take every host; routes' hostnames choose",
                doc.origin()
            ));
        }
        model.listeners.push(Listener {
            name: listener_name,
            address: format!("0.0.0.0:{port}"),
            gateway: Some((gw.clone(), name.to_string())),
        });
    }
    Ok(())
}

/// An `HTTPRoute` (or `GRPCRoute` with `grpc`): a route per rule.
pub fn route(doc: &Doc, model: &mut Model, grpc: bool) -> Result<(), ConvertError> {
    let spec = &doc.value["spec"];
    let listeners = parents(doc, model)?;
    let mut hostnames = Vec::new();
    for (i, h) in doc
        .list(&spec["hostnames"], "spec.hostnames")?
        .iter()
        .enumerate()
    {
        hostnames.push(doc.req_str(h, &format!("spec.hostnames[{i}]"))?.to_string());
    }
    let rules = doc.list(&spec["rules"], "spec.rules")?;
    if rules.is_empty() {
        return Err(doc.err("spec.rules", "no rule"));
    }
    for (i, rule) in rules.iter().enumerate() {
        let at = |key: &str| format!("spec.rules[{i}].{key}");
        let mut matches = Vec::new();
        for (j, m) in doc
            .list(&rule["matches"], &at("matches"))?
            .iter()
            .enumerate()
        {
            let path = format!("{}[{j}]", at("matches"));
            matches.push(if grpc {
                grpc_match(doc, m, &path)?
            } else {
                http_match(doc, m, &path)?
            });
        }
        let mut backends = Vec::new();
        for (j, b) in doc
            .list(&rule["backendRefs"], &at("backendRefs"))?
            .iter()
            .enumerate()
        {
            let path = format!("{}[{j}]", at("backendRefs"));
            let kind = doc
                .opt_str(&b["kind"], &format!("{path}.kind"))?
                .unwrap_or("Service");
            if kind != "Service" {
                model.note(format!("{}: {path}: a {kind} backend", doc.origin()));
                continue;
            }
            let service = doc.req_str(&b["name"], &format!("{path}.name"))?;
            let port = doc
                .opt_u64(&b["port"], &format!("{path}.port"))?
                .ok_or_else(|| {
                    doc.err(&format!("{path}.port"), "missing (a Service needs a port)")
                })?;
            let port = u16::try_from(port)
                .map_err(|_| doc.err(&format!("{path}.port"), format!("{port} is not a port")))?;
            let namespace = doc
                .opt_str(&b["namespace"], &format!("{path}.namespace"))?
                .map(str::to_string)
                .unwrap_or_else(|| doc.namespace(&model.namespace()).to_string());
            let weight = doc
                .opt_u64(&b["weight"], &format!("{path}.weight"))?
                .unwrap_or(1);
            let cluster = model.service_cluster(service, &namespace, port, grpc);
            backends.push((cluster, weight));
        }
        if backends.is_empty() {
            return Err(doc.err(&at("backendRefs"), "no Service backend"));
        }
        if backends.iter().all(|(_, w)| *w == 0) {
            return Err(doc.err(&at("backendRefs"), "every backend has weight 0"));
        }
        for key in ["filters", "timeouts", "retry"] {
            if !rule[key].is_null() {
                model.note(format!("{}: {}", doc.origin(), at(key)));
            }
        }
        let session = match (&rule["sessionPersistence"], &spec["sessionPersistence"]) {
            (Value::Null, Value::Null) => None,
            (Value::Null, s) => Some(session(doc, s, "spec.sessionPersistence", model)?),
            (s, _) => Some(session(doc, s, &at("sessionPersistence"), model)?),
        };
        let base = if rules.len() == 1 || i == 0 {
            doc.name().to_string()
        } else {
            format!("{}-{}", doc.name(), i + 1)
        };
        let name = model.route_name(&sanitize(&base));
        model.routes.push(Route {
            name,
            listeners: listeners.clone(),
            hostnames: hostnames.clone(),
            matches,
            backends,
            session: session.flatten(),
            origin: format!("{} `{}` rule {}", doc.kind, doc.name(), i + 1),
        });
    }
    Ok(())
}

/// The listeners of `spec.parentRefs`: a converted Gateway's (its `sectionName` one, or all),
/// else the default listener.
fn parents(doc: &Doc, model: &mut Model) -> Result<Vec<String>, ConvertError> {
    let mut found = Vec::new();
    let refs = doc.list(&doc.value["spec"]["parentRefs"], "spec.parentRefs")?;
    for (i, p) in refs.iter().enumerate() {
        let gw = doc.req_str(&p["name"], &format!("spec.parentRefs[{i}].name"))?;
        let section = doc.opt_str(
            &p["sectionName"],
            &format!("spec.parentRefs[{i}].sectionName"),
        )?;
        let port = doc.opt_u64(&p["port"], &format!("spec.parentRefs[{i}].port"))?;
        let of_gateway: Vec<String> = model
            .listeners
            .iter()
            .filter(|l| {
                l.gateway.as_ref().is_some_and(|(g, n)| {
                    g == gw
                        && section.is_none_or(|s| s == n)
                        && port.is_none_or(|p| l.address.ends_with(&format!(":{p}")))
                })
            })
            .map(|l| l.name.clone())
            .collect();
        if of_gateway.is_empty() {
            let default = model.default_listener();
            let address = model
                .listeners
                .iter()
                .find(|l| l.name == default)
                .map(|l| l.address.clone())
                .unwrap_or_default();
            model.note(format!(
                "{}: Gateway `{gw}` is not among the inputs: its routes listen on {address} (listener `{default}`)",
                doc.origin()
            ));
            found.push(default);
        } else {
            found.extend(of_gateway);
        }
    }
    if found.is_empty() {
        found.push(model.default_listener());
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn http_match(doc: &Doc, m: &Value, at: &str) -> Result<Match, ConvertError> {
    let mut out = Match::default();
    if !m["path"].is_null() {
        let kind = doc
            .opt_str(&m["path"]["type"], &format!("{at}.path.type"))?
            .unwrap_or("PathPrefix");
        let value = doc
            .opt_str(&m["path"]["value"], &format!("{at}.path.value"))?
            .unwrap_or("/");
        out.path = Some((kind.to_string(), value.to_string()));
    }
    for (k, h) in doc
        .list(&m["headers"], &format!("{at}.headers"))?
        .iter()
        .enumerate()
    {
        let hat = format!("{at}.headers[{k}]");
        if let Some(t) = doc.opt_str(&h["type"], &format!("{hat}.type"))? {
            if t != "Exact" {
                return Err(doc.err(
                    &format!("{hat}.type"),
                    format!("`{t}`: tether matches headers exactly"),
                ));
            }
        }
        out.headers.push((
            doc.req_str(&h["name"], &format!("{hat}.name"))?.to_string(),
            doc.req_str(&h["value"], &format!("{hat}.value"))?
                .to_string(),
        ));
    }
    out.method = doc
        .opt_str(&m["method"], &format!("{at}.method"))?
        .map(str::to_string);
    if !m["queryParams"].is_null() {
        return Err(doc.err(
            &format!("{at}.queryParams"),
            "tether does not match query parameters",
        ));
    }
    Ok(out)
}

/// A `GRPCRoute` match: `method: {service, method}` is the path `/service/method`.
fn grpc_match(doc: &Doc, m: &Value, at: &str) -> Result<Match, ConvertError> {
    let mut out = Match::default();
    let method = &m["method"];
    if !method.is_null() {
        let service = doc.opt_str(&method["service"], &format!("{at}.method.service"))?;
        let name = doc.opt_str(&method["method"], &format!("{at}.method.method"))?;
        out.path = match (service, name) {
            (Some(s), Some(n)) => Some(("Exact".into(), format!("/{s}/{n}"))),
            (Some(s), None) => Some(("PathPrefix".into(), format!("/{s}"))),
            (None, Some(n)) => Some((
                "RegularExpression".into(),
                format!("/[^/]+/{}", regex::escape(n)),
            )),
            (None, None) => None,
        };
    }
    for (k, h) in doc
        .list(&m["headers"], &format!("{at}.headers"))?
        .iter()
        .enumerate()
    {
        let hat = format!("{at}.headers[{k}]");
        out.headers.push((
            doc.req_str(&h["name"], &format!("{hat}.name"))?.to_string(),
            doc.req_str(&h["value"], &format!("{hat}.value"))?
                .to_string(),
        ));
    }
    Ok(out)
}

/// `sessionPersistence`, either shape.
fn session(
    doc: &Doc,
    s: &Value,
    at: &str,
    model: &mut Model,
) -> Result<Option<Session>, ConvertError> {
    let kind = doc
        .opt_str(&s["type"], &format!("{at}.type"))?
        .unwrap_or("Cookie");
    let header = match kind.to_ascii_lowercase().as_str() {
        "cookie" => false,
        "header" => true,
        _ => {
            return Err(doc.err(
                &format!("{at}.type"),
                format!("`{kind}`: expected Cookie or Header"),
            ))
        }
    };
    // `sessionName` (Gateway API), or `cookie.name` / `header.name` (the other shape).
    let carrier = if header { &s["header"] } else { &s["cookie"] };
    let name = match doc.opt_str(&s["sessionName"], &format!("{at}.sessionName"))? {
        Some(n) => n.to_string(),
        None => match doc.opt_str(
            &carrier["name"],
            &format!("{at}.{}.name", if header { "header" } else { "cookie" }),
        )? {
            Some(n) => n.to_string(),
            None => {
                let default = if header { "Session-Id" } else { "_srv_id" };
                model.note(format!(
                    "{}: {at}: no session name; using `{default}`",
                    doc.origin()
                ));
                default.to_string()
            }
        },
    };
    let timeout = |key: &str| -> Result<Option<String>, ConvertError> {
        match doc.opt_str(&s[key], &format!("{at}.{key}"))? {
            None => Ok(None),
            Some(t) => duration(t)
                .map(Some)
                .ok_or_else(|| doc.err(&format!("{at}.{key}"), format!("`{t}` is not a duration"))),
        }
    };
    let absolute_timeout = timeout("absoluteTimeout")?;
    let idle_timeout = timeout("idleTimeout")?;
    let lifetime = doc
        .opt_str(
            &s["cookieConfig"]["lifetimeType"],
            &format!("{at}.cookieConfig.lifetimeType"),
        )?
        .or(doc.opt_str(
            &carrier["lifetimeType"],
            &format!("{at}.cookie.lifetimeType"),
        )?);
    let mut permanent = lifetime.is_some_and(|l| l.eq_ignore_ascii_case("Permanent"));
    if permanent && absolute_timeout.is_none() {
        model.note(format!(
            "{}: {at}: a Permanent cookie without absoluteTimeout: made a session cookie",
            doc.origin()
        ));
        permanent = false;
    }
    let path = doc
        .opt_str(&carrier["path"], &format!("{at}.cookie.path"))?
        .map(str::to_string);
    Ok(Some(Session {
        header,
        name,
        absolute_timeout,
        idle_timeout,
        permanent: permanent && !header,
        path: if header { None } else { path },
        strict: false,
    }))
}
