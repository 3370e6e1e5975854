//! `routes[]`: which requests a route takes (listeners, hostnames, path, headers, method), the
//! clusters it sends them to with their weights, and its session policy (a route is one session
//! scope).

use http::{HeaderName, Method};
use regex::Regex;

use super::decode::{Field, Fields, Res};
use super::session::{session, SessionConfig};

/// Largest weight of a cluster in a route (as Gateway API's `backendRefs[].weight`).
pub const MAX_CLUSTER_WEIGHT: u64 = 1_000_000;

/// A route: requests it matches go to its clusters.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Unique name, `[A-Za-z0-9_-]+`: the session scope and the metrics label.
    pub name: String,
    /// The listeners it is attached to (indexes into [`super::Config::listeners`]).
    pub listeners: Vec<usize>,
    /// Hostnames it takes; empty means any.
    pub hostnames: Vec<Hostname>,
    /// Any one of them must hold; never empty (no `matches` is one match of every request).
    pub matches: Vec<RouteMatch>,
    /// Its clusters and their weights for new sessions.
    pub backends: Vec<WeightedCluster>,
    /// Session persistence; `None` means plain weighted round robin.
    pub session: Option<SessionConfig>,
}

/// A hostname of a route, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Hostname {
    /// `shop.example.com`.
    Exact(String),
    /// `*.example.com`, held as `example.com`: one or more labels in front of it.
    Wildcard(String),
}

impl Hostname {
    /// Whether `host` (lowercase, without port) is one this hostname takes.
    pub fn accepts(&self, host: &str) -> bool {
        match self {
            Hostname::Exact(name) => host == name,
            Hostname::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|front| front.strip_suffix('.'))
                .is_some_and(|front| !front.is_empty()),
        }
    }

    /// As written in the config (`*.example.com` for a wildcard).
    pub fn to_text(&self) -> String {
        match self {
            Hostname::Exact(name) => name.clone(),
            Hostname::Wildcard(suffix) => format!("*.{suffix}"),
        }
    }
}

/// One entry of `matches`: all of its conditions must hold.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// The path condition (`PathPrefix /` when none is given).
    pub path: PathMatch,
    /// Headers that must be present with exactly these values.
    pub headers: Vec<HeaderMatch>,
    /// The method, if the match names one.
    pub method: Option<Method>,
}

/// How a match looks at the path (the query string takes no part).
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// The whole path.
    Exact(String),
    /// Whole leading segments: `/cart` takes `/cart` and `/cart/x`, not `/cartx`. Held without
    /// a trailing `/` (except `/` itself), as Gateway API ignores one.
    Prefix(String),
    /// A regular expression that must match the whole path.
    Regex(Regex),
}

impl PathMatch {
    /// Whether `path` satisfies it.
    pub fn accepts(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(value) => path == value,
            PathMatch::Prefix(prefix) => {
                prefix == "/"
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            PathMatch::Regex(re) => re.is_match(path),
        }
    }
}

/// A header condition: the header is present with exactly this value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// The header's name.
    pub name: HeaderName,
    /// The value it must have.
    pub value: String,
}

/// A cluster of a route with its share of new sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightedCluster {
    /// Index into [`super::Config::clusters`].
    pub cluster: usize,
    /// Share of new sessions; 0: none (its pinned sessions are still served).
    pub weight: u32,
}

/// Decodes one `routes[i]`; `listener` and `cluster` resolve names to indexes (`None`: unknown),
/// `every_listener` is the default attachment.
pub(crate) fn route(
    field: &Field<'_>,
    listener: &dyn Fn(&str) -> Option<usize>,
    cluster: &dyn Fn(&str) -> Option<usize>,
    every_listener: &[usize],
) -> Res<RouteConfig> {
    let f = field.map()?;
    let name = super::cluster::name(&f, "route")?;
    let listeners = match f.opt("listeners") {
        Some(list) => {
            let mut found = Vec::new();
            for item in list.one_or_list()? {
                let text = item.string()?;
                let idx = listener(&text)
                    .ok_or_else(|| item.err(format!("unknown listener `{text}`")))?;
                if !found.contains(&idx) {
                    found.push(idx);
                }
            }
            if found.is_empty() {
                return Err(list.err("at least one listener is required"));
            }
            found
        }
        None => every_listener.to_vec(),
    };
    if listeners.is_empty() {
        return Err(field.err(
            "the route has no listener: name one in `listeners`, or define `listeners` at the top",
        ));
    }
    let hostnames = match f.opt("hostnames") {
        Some(list) => list
            .one_or_list()?
            .iter()
            .map(hostname)
            .collect::<Res<Vec<_>>>()?,
        None => Vec::new(),
    };
    let matches = match f.opt("matches") {
        Some(list) => {
            let items = list.list()?;
            if items.is_empty() {
                return Err(list
                    .err("an empty list matches nothing: omit `matches` to match every request"));
            }
            items.iter().map(route_match).collect::<Res<Vec<_>>>()?
        }
        None => vec![RouteMatch {
            path: PathMatch::Prefix("/".to_string()),
            headers: Vec::new(),
            method: None,
        }],
    };
    let backends = backends(&f, cluster)?;
    let session = f
        .opt("session_persistence")
        .map(|s| session(&s))
        .transpose()?;
    f.finish()?;
    Ok(RouteConfig {
        name,
        listeners,
        hostnames,
        matches,
        backends,
        session,
    })
}

fn backends(f: &Fields<'_>, cluster: &dyn Fn(&str) -> Option<usize>) -> Res<Vec<WeightedCluster>> {
    let list = f.req("backends")?;
    let items = list.list()?;
    if items.is_empty() {
        return Err(list.err("at least one cluster is required"));
    }
    let mut out: Vec<WeightedCluster> = Vec::new();
    for item in &items {
        let b = item.map()?;
        let name_field = b.req("cluster")?;
        let name = name_field.string()?;
        let idx =
            cluster(&name).ok_or_else(|| name_field.err(format!("unknown cluster `{name}`")))?;
        if out.iter().any(|w| w.cluster == idx) {
            return Err(name_field.err(format!("cluster `{name}` is listed twice")));
        }
        let weight = match b.opt("weight") {
            Some(w) => {
                let n = w.uint()?;
                if n > MAX_CLUSTER_WEIGHT {
                    return Err(w.err(format!("must be at most {MAX_CLUSTER_WEIGHT}, found {n}")));
                }
                n as u32
            }
            None => 1,
        };
        b.finish()?;
        out.push(WeightedCluster {
            cluster: idx,
            weight,
        });
    }
    if out.iter().all(|w| w.weight == 0) {
        return Err(list.err("every cluster has weight 0: no new session could be placed"));
    }
    Ok(out)
}

/// A hostname: a DNS name, or `*.` and a DNS name; any case, no port, no trailing dot.
fn hostname(field: &Field<'_>) -> Res<Hostname> {
    let text = field.string()?;
    let lower = text.to_ascii_lowercase();
    let (wildcard, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(field.err(format!(
            "invalid hostname `{text}`: a DNS name (letters, digits, `-`, dots between labels), \
             optionally preceded by `*.`; no port, no trailing dot"
        )));
    }
    Ok(if wildcard {
        Hostname::Wildcard(name.to_string())
    } else {
        Hostname::Exact(name.to_string())
    })
}

fn route_match(field: &Field<'_>) -> Res<RouteMatch> {
    let f = field.map()?;
    let path = match f.opt("path") {
        Some(p) => path_match(&p)?,
        None => PathMatch::Prefix("/".to_string()),
    };
    let headers = match f.opt("headers") {
        Some(list) => list
            .list()?
            .iter()
            .map(header_match)
            .collect::<Res<Vec<_>>>()?,
        None => Vec::new(),
    };
    let method = match f.opt("method") {
        Some(m) => {
            let text = m.string()?;
            if !super::session::is_token(&text) {
                return Err(m.err(format!("invalid method {}", m.quoted())));
            }
            Some(
                Method::from_bytes(text.as_bytes())
                    .map_err(|_| m.err(format!("invalid method {}", m.quoted())))?,
            )
        }
        None => None,
    };
    f.finish()?;
    Ok(RouteMatch {
        path,
        headers,
        method,
    })
}

fn path_match(field: &Field<'_>) -> Res<PathMatch> {
    let f = field.map()?;
    let type_field = f.opt("type");
    let kind = match &type_field {
        Some(t) => t.string()?.to_ascii_lowercase(),
        None => "pathprefix".to_string(),
    };
    let value_field = f.req("value")?;
    let value = value_field.string()?;
    if !value.starts_with('/') {
        return Err(value_field.err(format!("path {} must start with `/`", value_field.quoted())));
    }
    let plain = |v: &str| {
        v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    };
    let path = match (kind.as_str(), &type_field) {
        ("exact", _) if plain(&value) => PathMatch::Exact(value),
        ("pathprefix", _) if plain(&value) => {
            let trimmed = value.trim_end_matches('/');
            PathMatch::Prefix(if trimmed.is_empty() { "/" } else { trimmed }.to_string())
        }
        ("exact" | "pathprefix", _) => {
            return Err(value_field.err(format!(
                "path {} may hold visible ASCII only, without `?` or `#`",
                value_field.quoted()
            )))
        }
        ("regularexpression", _) => {
            let re = Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                value_field.err(format!(
                    "regular expression {} does not compile: {}",
                    value_field.quoted(),
                    e.to_string().lines().last().unwrap_or("invalid")
                ))
            })?;
            PathMatch::Regex(re)
        }
        (_, Some(t)) => {
            return Err(t.err(format!(
                "unknown path type {}: expected Exact, PathPrefix or RegularExpression",
                t.quoted()
            )))
        }
        (_, None) => PathMatch::Prefix(value),
    };
    f.finish()?;
    Ok(path)
}

fn header_match(field: &Field<'_>) -> Res<HeaderMatch> {
    let f = field.map()?;
    let name_field = f.req("name")?;
    let text = name_field.string()?;
    let name = super::session::is_token(&text)
        .then(|| HeaderName::from_bytes(text.as_bytes()).ok())
        .flatten()
        .ok_or_else(|| name_field.err(format!("invalid header name {}", name_field.quoted())))?;
    let value = f.req("value")?.string()?;
    f.finish()?;
    Ok(HeaderMatch { name, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_take_whole_segments() {
        let p = PathMatch::Prefix("/cart".into());
        for path in ["/cart", "/cart/", "/cart/x", "/cart/x/y"] {
            assert!(p.accepts(path), "{path}");
        }
        for path in ["/cartx", "/car", "/", "/x/cart", "//cart"] {
            assert!(!p.accepts(path), "{path}");
        }
        assert!(PathMatch::Prefix("/".into()).accepts("/anything"));
    }

    #[test]
    fn wildcards_take_one_or_more_labels_in_front() {
        let w = Hostname::Wildcard("example.com".into());
        assert!(w.accepts("a.example.com"));
        assert!(w.accepts("a.b.example.com"));
        assert!(!w.accepts("example.com"));
        assert!(!w.accepts(".example.com"));
        assert!(!w.accepts("aexample.com"));
        assert!(Hostname::Exact("a.test".into()).accepts("a.test"));
        assert!(!Hostname::Exact("a.test".into()).accepts("b.a.test"));
    }
}
