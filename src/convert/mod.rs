//! `tether convert FILE...`: the manifests operators already have (Gateway API `Gateway`,
//! `HTTPRoute`, `GRPCRoute`; FSM `SessionStickyPolicy`; an Envoy config with the
//! `stateful_session` filter) made into a tether config on stdout, which `tether -t` accepts,
//! with a `# not converted: ...` comment for each thing that does not carry over (SPEC 9).
//!
//! Each input is read into a small model ([`model`]), then written out ([`emit`]). Services
//! become clusters with DNS discovery of `<name>.<namespace>.svc.cluster.local`.

mod envoy;
mod fsm;
mod gateway_api;
mod model;
mod read;

use std::path::Path;

use model::Model;
pub use model::Options;

/// A manifest that cannot be converted: which file, which document, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError(pub String);

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Converts `files` (each one or more YAML documents) into a tether config.
pub fn convert(files: &[&Path], options: &Options) -> Result<String, ConvertError> {
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ConvertError(format!("{}: cannot read: {e}", file.display())))?;
        docs.extend(read::documents(&file.display().to_string(), &text)?);
    }
    let mut model = Model::new(options);
    // Gateways first (routes attach to their listeners), policies last (they find routes).
    for doc in docs.iter().filter(|d| d.kind == "Gateway") {
        gateway_api::gateway(doc, &mut model)?;
    }
    for doc in &docs {
        match doc.kind.as_str() {
            "Gateway" | "SessionStickyPolicy" => {}
            "HTTPRoute" => gateway_api::route(doc, &mut model, false)?,
            "GRPCRoute" => gateway_api::route(doc, &mut model, true)?,
            "" if envoy::is_envoy(&doc.value) => envoy::config(doc, &mut model)?,
            "" if !doc.value.is_mapping() => {
                return Err(ConvertError(format!(
                    "{}: expected a mapping (a manifest), found {}",
                    doc.origin(),
                    read::shape(&doc.value)
                )))
            }
            "" => model.note(format!(
                "{}: a document with no `kind` and no Envoy stateful_session filter",
                doc.origin()
            )),
            other => model.note(format!(
                "{}: kind {other} `{}` (not a kind tether converts{})",
                doc.origin(),
                doc.name(),
                if other == "Service" {
                    "; backendRefs to it become DNS discovery of its name"
                } else {
                    ""
                }
            )),
        }
    }
    for doc in docs.iter().filter(|d| d.kind == "SessionStickyPolicy") {
        fsm::policy(doc, &mut model)?;
    }
    let sources: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    if model.routes.is_empty() {
        return Err(ConvertError(format!(
            "{}: nothing to convert: no HTTPRoute, GRPCRoute or Envoy stateful_session filter",
            sources.join(", ")
        )));
    }
    Ok(model.emit(&sources))
}

#[cfg(test)]
mod tests;
