//! Reading `Set-Cookie` in the tests.

use super::Response;

/// A cookie's attributes as (lower-cased name, value).
pub type Attributes = Vec<(String, String)>;

/// The `name=value` of a response's first `Set-Cookie`, and its attributes.
pub fn first_set_cookie(r: &Response) -> Option<(String, String, Attributes)> {
    let sc = r.head.headers_named("set-cookie").into_iter().next()?;
    let mut parts = sc.split(';');
    let (name, value) = parts.next()?.trim().split_once('=')?;
    let attrs = parts
        .map(|p| {
            let p = p.trim();
            match p.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
                None => (p.to_ascii_lowercase(), String::new()),
            }
        })
        .collect();
    Some((name.to_string(), value.to_string(), attrs))
}

/// The value a response sets for cookie `name`, if it sets one.
pub fn set_cookie_value(r: &Response, name: &str) -> Option<String> {
    r.head
        .headers_named("set-cookie")
        .into_iter()
        .find_map(|sc| {
            let (n, v) = sc.split(';').next()?.trim().split_once('=')?;
            (n == name).then(|| v.to_string())
        })
}
