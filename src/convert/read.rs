//! Reading manifests: YAML documents as `serde_yaml` values, and typed reads of their keys
//! whose errors name the file, the document, its kind and name, and the key path.

use serde_yaml::Value;

use super::ConvertError;

/// One YAML document of an input file.
pub struct Doc {
    /// The file it came from.
    pub file: String,
    /// Its position in the file (0-based).
    pub index: usize,
    /// `kind`, or empty.
    pub kind: String,
    /// The whole document.
    pub value: Value,
}

/// The documents of `text` (`---`-separated); empty ones are skipped.
pub fn documents(file: &str, text: &str) -> Result<Vec<Doc>, ConvertError> {
    let mut docs = Vec::new();
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = <Value as serde::Deserialize>::deserialize(de).map_err(|e| {
            let at = e
                .location()
                .map_or(String::new(), |l| format!(":{}", l.line()));
            ConvertError(format!("{file}{at}: not valid YAML: {e}"))
        })?;
        if value.is_null() {
            continue;
        }
        // A list is no manifest, but may be an Envoy `http_filters` list.
        if !value.is_mapping() && !value.is_sequence() {
            return Err(ConvertError(format!(
                "{file} (document {}): expected a mapping (a manifest), found {}",
                index + 1,
                shape(&value)
            )));
        }
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        docs.push(Doc {
            file: file.to_string(),
            index,
            kind,
            value,
        });
    }
    Ok(docs)
}

/// What a value is, for messages.
pub fn shape(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl Doc {
    /// How messages name the document: file and position.
    pub fn origin(&self) -> String {
        format!("{} (document {})", self.file, self.index + 1)
    }

    /// `metadata.name`, or `?`.
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("?")
    }

    /// `metadata.namespace`, or `fallback` (the `--namespace` given, or `default`).
    pub fn namespace<'a>(&'a self, fallback: &'a str) -> &'a str {
        self.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or(fallback)
    }

    /// An error about key `path` of this document.
    pub fn err(&self, path: &str, message: impl std::fmt::Display) -> ConvertError {
        ConvertError(format!(
            "{} (document {}, {} `{}`): {path}: {message}",
            self.file,
            self.index + 1,
            if self.kind.is_empty() {
                "Envoy config"
            } else {
                &self.kind
            },
            self.name()
        ))
    }

    /// The string at `v` (key `path`), if present; an error if it is something else.
    pub fn opt_str<'a>(&self, v: &'a Value, path: &str) -> Result<Option<&'a str>, ConvertError> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(self.err(path, format!("expected a string, found {}", shape(other)))),
        }
    }

    /// The string at `v` (key `path`), required.
    pub fn req_str<'a>(&self, v: &'a Value, path: &str) -> Result<&'a str, ConvertError> {
        self.opt_str(v, path)?
            .ok_or_else(|| self.err(path, "missing"))
    }

    /// The whole number at `v` (key `path`), if present.
    pub fn opt_u64(&self, v: &Value, path: &str) -> Result<Option<u64>, ConvertError> {
        match v {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.err(path, format!("expected a whole number, found {n}"))),
            other => Err(self.err(
                path,
                format!("expected a whole number, found {}", shape(other)),
            )),
        }
    }

    /// The list at `v` (key `path`); absent is empty.
    pub fn list<'a>(&self, v: &'a Value, path: &str) -> Result<&'a [Value], ConvertError> {
        match v {
            Value::Null => Ok(&[]),
            Value::Sequence(items) => Ok(items),
            other => Err(self.err(path, format!("expected a list, found {}", shape(other)))),
        }
    }
}
