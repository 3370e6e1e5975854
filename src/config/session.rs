//! `session_persistence:` of a route (or of a `services` entry): where the token travels, its
//! lifetimes, and the cookie's attributes.

use std::time::Duration;

use super::decode::{Field, Res};

/// `session_persistence:` of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Cookie or header.
    pub kind: SessionKind,
    /// Cookie or header name.
    pub name: String,
    /// Session lifetime from its start.
    pub absolute_timeout: Option<Duration>,
    /// Session ends after this long without a request.
    pub idle_timeout: Option<Duration>,
    /// 503 instead of re-pinning when the session's backend is unavailable.
    pub strict: bool,
    /// Cookie attributes (Cookie type only).
    pub cookie: CookieConfig,
}

/// Where the session token travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// In a cookie.
    Cookie,
    /// In a request/response header.
    Header,
}

/// Attributes of the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    /// Permanent (Max-Age + Expires) or Session.
    pub lifetime_type: LifetimeType,
    /// `Path`.
    pub path: String,
    /// `Domain`, if any.
    pub domain: Option<String>,
    /// When `Secure` is set.
    pub secure: Secure,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `SameSite`.
    pub same_site: SameSite,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            lifetime_type: LifetimeType::Session,
            path: "/".to_string(),
            domain: None,
            secure: Secure::Auto,
            http_only: true,
            same_site: SameSite::Lax,
        }
    }
}

/// Cookie lifetime type (Gateway API naming).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeType {
    /// `Max-Age` and `Expires` set from `absolute_timeout`.
    Permanent,
    /// A browser-session cookie.
    Session,
}

/// When the cookie gets `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secure {
    /// When the request came over TLS.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The `SameSite` cookie attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None` (requires `Secure`).
    None,
}

impl SameSite {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// RFC 7230 `tchar`, which is also RFC 6265's cookie-name `token`.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Headers tether or HTTP itself owns; a session header may not take their name.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "cookie",
    "set-cookie",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// Decodes a `session_persistence` mapping.
pub(crate) fn session(field: &Field<'_>) -> Res<SessionConfig> {
    let f = field.map()?;
    let type_field = f.req("type")?;
    let kind = match type_field.string()?.to_ascii_lowercase().as_str() {
        "cookie" => SessionKind::Cookie,
        "header" => SessionKind::Header,
        _ => {
            return Err(type_field.err(format!(
                "unknown type {}: expected Cookie or Header",
                type_field.quoted()
            )))
        }
    };
    let name_field = f.req("name")?;
    let name = name_field.string()?;
    if !is_token(&name) {
        return Err(name_field.err(format!(
            "`{name}` is not a valid {} name (RFC 6265 / RFC 7230 token: letters, digits and !#$%&'*+-.^_`|~)",
            if kind == SessionKind::Cookie { "cookie" } else { "header" }
        )));
    }
    if kind == SessionKind::Header && RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
    {
        return Err(name_field.err(format!("`{name}` is reserved and cannot carry sessions")));
    }
    let absolute_timeout = f
        .opt("absolute_timeout")
        .map(|d| d.duration())
        .transpose()?;
    let idle_timeout = f.opt("idle_timeout").map(|d| d.duration()).transpose()?;
    let strict = f
        .opt("strict")
        .map(|b| b.boolean())
        .transpose()?
        .unwrap_or(false);
    let cookie = match f.opt("cookie") {
        Some(c) if kind == SessionKind::Header => {
            return Err(c.err("only allowed with `type: Cookie`"));
        }
        Some(c) => cookie(&c)?,
        None => CookieConfig::default(),
    };
    f.finish()?;
    if cookie.lifetime_type == LifetimeType::Permanent && absolute_timeout.is_none() {
        return Err(field.err("`cookie.lifetime_type: Permanent` requires `absolute_timeout`"));
    }
    Ok(SessionConfig {
        kind,
        name,
        absolute_timeout,
        idle_timeout,
        strict,
        cookie,
    })
}

fn cookie(field: &Field<'_>) -> Res<CookieConfig> {
    let f = field.map()?;
    let mut c = CookieConfig::default();
    if let Some(l) = f.opt("lifetime_type") {
        c.lifetime_type = match l.string()?.to_ascii_lowercase().as_str() {
            "permanent" => LifetimeType::Permanent,
            "session" => LifetimeType::Session,
            _ => {
                return Err(l.err(format!(
                    "unknown lifetime_type {}: expected Permanent or Session",
                    l.quoted()
                )))
            }
        };
    }
    // Attribute values end up inside Set-Cookie: nothing that could end or split it.
    let attr_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b > b' ' && b != b';' && b != 0x7f);
    if let Some(p) = f.opt("path") {
        c.path = p.string()?;
        if !c.path.starts_with('/') || !attr_ok(&c.path) {
            return Err(
                p.err("must start with `/` and contain no spaces, `;` or control characters")
            );
        }
    }
    if let Some(d) = f.opt("domain") {
        let domain = d.string()?;
        if !attr_ok(&domain)
            || !domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(d.err(format!("`{domain}` is not a domain name")));
        }
        c.domain = Some(domain);
    }
    if let Some(s) = f.opt("secure") {
        c.secure = match s.string()?.to_ascii_lowercase().as_str() {
            "auto" => Secure::Auto,
            "true" => Secure::Always,
            "false" => Secure::Never,
            _ => {
                return Err(s.err(format!(
                    "expected auto, true or false, found {}",
                    s.quoted()
                )))
            }
        };
    }
    if let Some(b) = f.opt("http_only") {
        c.http_only = b.boolean()?;
    }
    if let Some(s) = f.opt("same_site") {
        c.same_site = match s.string()?.to_ascii_lowercase().as_str() {
            "strict" => SameSite::Strict,
            "lax" => SameSite::Lax,
            "none" => SameSite::None,
            _ => {
                return Err(s.err(format!(
                    "unknown same_site {}: expected Strict, Lax or None",
                    s.quoted()
                )))
            }
        };
        if c.same_site == SameSite::None && c.secure == Secure::Never {
            return Err(s.err("`same_site: None` requires `secure: true` or `auto`"));
        }
    }
    f.finish()?;
    Ok(c)
}
