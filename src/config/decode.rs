//! Typed reads from the YAML tree, each failure a [`ConfigError`] with key path and line.

use std::cell::RefCell;
use std::time::Duration;

use super::yaml::{MapEntry, Node, NodeKind};
use super::ConfigError;

pub(crate) type Res<T> = Result<T, ConfigError>;

/// A node together with its key path (`services[1].backends[0].weight`).
pub(crate) struct Field<'a> {
    pub node: &'a Node,
    pub path: String,
}

/// The entries of a mapping, read key by key: each key is named once, where it is read, and
/// [`Fields::finish`] reports the keys nobody read as unknown (with the nearest known one).
pub(crate) struct Fields<'a> {
    path: String,
    line: usize,
    entries: &'a [MapEntry],
    /// Which entries were read, in entry order.
    read: RefCell<Vec<bool>>,
    /// Every key asked for, present or not: the known keys of this mapping.
    asked: RefCell<Vec<String>>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Field<'a> {
    pub fn new(node: &'a Node, path: impl Into<String>) -> Self {
        Field {
            node,
            path: path.into(),
        }
    }

    /// An error about this field.
    pub fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.node.line, &self.path, message)
    }

    fn scalar(&self, what: &str) -> Res<(&'a str, bool)> {
        match &self.node.kind {
            NodeKind::Scalar { text, quoted } if !self.node.is_null() => Ok((text, *quoted)),
            _ => Err(self.err(format!("expected {what}, found {}", self.node.shape()))),
        }
    }

    /// A string; numbers and other plain scalars are taken as written.
    pub fn string(&self) -> Res<String> {
        Ok(self.scalar("a string")?.0.to_string())
    }

    /// A non-negative integer (plain, not quoted).
    pub fn uint(&self) -> Res<u64> {
        match self.scalar("a whole number")? {
            (text, false) => text
                .parse::<u64>()
                .map_err(|_| self.err(format!("expected a whole number, found `{text}`"))),
            (text, true) => Err(self.err(format!(
                "expected a whole number, found the string \"{text}\""
            ))),
        }
    }

    /// An integer of at least `min`.
    pub fn uint_min(&self, min: u64) -> Res<u64> {
        let n = self.uint()?;
        if n < min {
            return Err(self.err(format!("must be at least {min}, found {n}")));
        }
        Ok(n)
    }

    /// `true` or `false`.
    pub fn boolean(&self) -> Res<bool> {
        match self.scalar("true or false")? {
            ("true" | "True" | "TRUE", false) => Ok(true),
            ("false" | "False" | "FALSE", false) => Ok(false),
            (text, _) => Err(self.err(format!("expected true or false, found `{text}`"))),
        }
    }

    /// A positive duration: `500ms`, `10s`, `10m`, `1h`, or a bare integer of seconds.
    pub fn duration(&self) -> Res<Duration> {
        let (text, _) = self.scalar("a duration such as 500ms, 10s, 10m, 1h")?;
        let d = parse_duration(text).map_err(|why| self.err(why))?;
        if d.is_zero() {
            return Err(self.err("must be greater than 0"));
        }
        Ok(d)
    }

    /// The items of a list.
    pub fn list(&self) -> Res<Vec<Field<'a>>> {
        match &self.node.kind {
            NodeKind::Seq(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, n)| Field::new(n, format!("{}[{i}]", self.path)))
                .collect()),
            _ => Err(self.err(format!("expected a list, found {}", self.node.shape()))),
        }
    }

    /// A list, or a single item taken as a list of one.
    pub fn one_or_list(&self) -> Res<Vec<Field<'a>>> {
        match &self.node.kind {
            NodeKind::Seq(_) => self.list(),
            _ => Ok(vec![Field::new(self.node, self.path.clone())]),
        }
    }

    /// A mapping, to be read key by key (then [`Fields::finish`]).
    pub fn map(&self) -> Res<Fields<'a>> {
        let NodeKind::Map(entries) = &self.node.kind else {
            return Err(self.err(format!("expected a mapping, found {}", self.node.shape())));
        };
        for (i, entry) in entries.iter().enumerate() {
            if entries[..i].iter().any(|e| e.key == entry.key) {
                return Err(ConfigError::at(
                    entry.line,
                    &join(&self.path, &entry.key),
                    format!("key `{}` appears twice", entry.key),
                ));
            }
        }
        Ok(Fields {
            path: self.path.clone(),
            line: self.node.line,
            entries,
            read: RefCell::new(vec![false; entries.len()]),
            asked: RefCell::new(Vec::new()),
        })
    }

    /// A string value as written, for messages: `` `value` ``.
    pub fn quoted(&self) -> String {
        match &self.node.kind {
            NodeKind::Scalar { text, .. } => format!("`{text}`"),
            _ => self.node.shape().to_string(),
        }
    }
}

impl<'a> Fields<'a> {
    /// An error about the mapping as a whole.
    pub fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.line, &self.path, message)
    }

    /// The field under `key`, if present and not null; `key` is known to this mapping.
    pub fn opt(&self, key: &'static str) -> Option<Field<'a>> {
        self.asked.borrow_mut().push(key.to_string());
        let i = self.entries.iter().position(|e| e.key == key)?;
        self.read.borrow_mut()[i] = true;
        let entry = &self.entries[i];
        (!entry.value.is_null()).then(|| Field::new(&entry.value, join(&self.path, key)))
    }

    /// Whether `key` is present (and not null); `key` is known to this mapping.
    pub fn has(&self, key: &'static str) -> bool {
        self.asked.borrow_mut().push(key.to_string());
        self.entries
            .iter()
            .any(|e| e.key == key && !e.value.is_null())
    }

    /// The field under `key`; an error naming it when missing (or, when an unread key looks
    /// like a misspelling of it, naming that one).
    pub fn req(&self, key: &'static str) -> Res<Field<'a>> {
        if let Some(field) = self.opt(key) {
            return Ok(field);
        }
        if let Some(typo) = self.unread().find(|e| closest(&e.key, &[key]).is_some()) {
            return Err(self.unknown(typo, Some(key)));
        }
        Err(ConfigError::at(
            self.line,
            &join(&self.path, key),
            format!("missing required key `{key}`"),
        ))
    }

    /// The entries whose key is one of `known`, marked read: keys handled generically.
    pub fn take(&self, known: &[String]) -> Vec<&'a MapEntry> {
        self.asked.borrow_mut().extend(known.iter().cloned());
        let keep = |key: &str| known.iter().any(|k| k == key);
        let mut read = self.read.borrow_mut();
        self.entries
            .iter()
            .zip(read.iter_mut())
            .filter(|(e, _)| keep(&e.key))
            .map(|(e, r)| {
                *r = true;
                e
            })
            .collect()
    }

    /// Ends the reading: the first key that was not read is unknown.
    pub fn finish(self) -> Res<()> {
        match self.unread().next() {
            Some(entry) => {
                let asked = self.asked.borrow();
                let known: Vec<&str> = asked.iter().map(String::as_str).collect();
                let hint = closest(&entry.key, &known);
                Err(self.unknown(entry, hint))
            }
            None => Ok(()),
        }
    }

    fn unread(&self) -> impl Iterator<Item = &'a MapEntry> + '_ {
        let read = self.read.borrow().clone();
        self.entries
            .iter()
            .zip(read)
            .filter(|(_, r)| !r)
            .map(|(e, _)| e)
    }

    fn unknown(&self, entry: &MapEntry, hint: Option<&str>) -> ConfigError {
        let hint = hint
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        ConfigError::at(
            entry.line,
            &join(&self.path, &entry.key),
            format!("unknown key `{}`{hint}", entry.key),
        )
    }
}

/// Parses `500ms`, `10s`, `10m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let bad = || {
        format!("invalid duration `{text}`: use a whole number with ms, s, m or h (e.g. 500ms, 10s, 10m, 1h) or bare seconds")
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let millis_per_unit: u64 = match unit.trim() {
        "" | "s" => 1000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration `{text}` is too large"))
}

/// The allowed key nearest to a misspelled one, when it is near enough to be a likely typo.
fn closest<'k>(key: &str, allowed: &[&'k str]) -> Option<&'k str> {
    allowed
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_every_documented_form() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
    }

    #[test]
    fn durations_refuse_other_forms() {
        for bad in [
            "",
            "s",
            "10x",
            "1.5s",
            "-1s",
            "10 sec",
            "1h30m",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn typos_find_their_key() {
        let keys = ["grace_period_seconds", "threads", "services"];
        assert_eq!(
            closest("grace_period_second", &keys),
            Some("grace_period_seconds")
        );
        assert_eq!(closest("service", &keys), Some("services"));
        assert_eq!(closest("zzz", &keys), None);
    }
}
