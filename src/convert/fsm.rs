//! FSM's `SessionStickyPolicy`: per port of a Service, a cookie (`cookieName`) lasting
//! `expires` seconds. It becomes the session persistence of the routes that send requests to
//! that Service port (made from the HTTPRoutes of the same input).

use super::model::{Backends, Model, Session};
use super::read::Doc;
use super::ConvertError;

/// A `SessionStickyPolicy`.
pub fn policy(doc: &Doc, model: &mut Model) -> Result<(), ConvertError> {
    let spec = &doc.value["spec"];
    let target = &spec["targetRef"];
    let kind = doc
        .opt_str(&target["kind"], "spec.targetRef.kind")?
        .unwrap_or("Service");
    if kind != "Service" {
        model.note(format!(
            "{}: spec.targetRef is a {kind}, not a Service",
            doc.origin()
        ));
        return Ok(());
    }
    let service = doc.req_str(&target["name"], "spec.targetRef.name")?;
    let namespace = doc
        .opt_str(&target["namespace"], "spec.targetRef.namespace")?
        .map(str::to_string)
        .unwrap_or_else(|| doc.namespace(&model.namespace()).to_string());
    let dns = format!("{service}.{namespace}.svc.cluster.local");
    let ports = doc.list(&spec["ports"], "spec.ports")?;
    if ports.is_empty() {
        return Err(doc.err("spec.ports", "no port"));
    }
    for (i, p) in ports.iter().enumerate() {
        let at = |key: &str| format!("spec.ports[{i}].{key}");
        let port = doc
            .opt_u64(&p["port"], &at("port"))?
            .ok_or_else(|| doc.err(&at("port"), "missing"))?;
        let config = &p["config"];
        let name = doc
            .opt_str(&config["cookieName"], &at("config.cookieName"))?
            .unwrap_or("_srv_id")
            .to_string();
        let expires = doc.opt_u64(&config["expires"], &at("config.expires"))?;
        let session = Session {
            header: false,
            name,
            absolute_timeout: expires.filter(|e| *e > 0).map(|e| format!("{e}s")),
            idle_timeout: None,
            permanent: expires.is_some_and(|e| e > 0),
            path: None,
            strict: false,
        };
        let clusters: Vec<String> = model
            .clusters
            .iter()
            .filter(|c| matches!(&c.backends, Backends::Dns(n, p) if *n == dns && u64::from(*p) == port))
            .map(|c| c.name.clone())
            .collect();
        let mut applied = 0;
        for route in model
            .routes
            .iter_mut()
            .filter(|r| r.backends.iter().any(|(c, _)| clusters.contains(c)))
        {
            if route.session.is_some() {
                continue;
            }
            route.session = Some(session.clone());
            applied += 1;
        }
        if applied == 0 {
            model.note(format!(
                "{}: no route without session persistence sends requests to {service}:{port}",
                doc.origin()
            ));
        }
    }
    Ok(())
}
