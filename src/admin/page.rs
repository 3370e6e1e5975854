//! `GET /` on the admin listener: one HTML page of listeners, routes with their session
//! counters, and clusters with each backend's state, health, ejection, weight, source and
//! sessions; no external assets, no JavaScript, refreshing itself every few seconds.

use std::fmt::Write;

use crate::cluster::Backend;
use crate::config::BackendState;
use crate::gateway::Gateway;
use crate::token::Reject;

/// Seconds between the page's own refreshes.
pub const REFRESH_SECONDS: u32 = 5;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}\
table{border-collapse:collapse;margin:.5em 0 1em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f2f2f2}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#116611;font-weight:600}.bad{color:#b00020;font-weight:600}.warn{color:#9a5b00;font-weight:600}\
small{color:#666}";

/// The page.
pub fn render(gw: &Gateway) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>tether status</title><style>{STYLE}</style></head><body>\
         <h1>tether {}</h1><small>This page refreshes every {REFRESH_SECONDS} s. \
         JSON: <a href=\"/status\">/status</a>, metrics: <a href=\"/metrics\">/metrics</a>.</small>",
        env!("CARGO_PKG_VERSION")
    );
    listeners(&mut h, gw);
    routes(&mut h, gw);
    clusters(&mut h, gw);
    h.push_str("</body></html>\n");
    h
}

fn listeners(h: &mut String, gw: &Gateway) {
    h.push_str("<h2>Listeners</h2><table><tr><th>name</th><th>address</th><th>TLS</th><th>HTTP/2</th><th>routes</th></tr>");
    for (i, l) in gw.listeners.iter().enumerate() {
        let routes: Vec<&str> = gw
            .routes
            .iter()
            .filter(|r| r.config.listeners.contains(&i))
            .map(|r| r.config.name.as_str())
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.name),
            l.address,
            yes_no(l.tls.is_some()),
            yes_no(l.http2),
            esc(&routes.join(", "))
        );
    }
    h.push_str("</table>");
}

fn routes(h: &mut String, gw: &Gateway) {
    h.push_str(
        "<h2>Routes</h2><table><tr><th>route</th><th>hostnames</th><th>clusters (weight)</th>\
         <th>session</th><th>created</th><th>routed</th><th>failed open</th>\
         <th>failed closed</th><th>rejected</th></tr>",
    );
    for r in &gw.routes {
        let c = &r.config;
        let hostnames: Vec<String> = c.hostnames.iter().map(|h| h.to_text()).collect();
        let clusters: Vec<String> = c
            .backends
            .iter()
            .map(|w| format!("{} ({})", gw.clusters[w.cluster].config.name, w.weight))
            .collect();
        let session = c.session.as_ref().map_or("none".to_string(), |s| {
            format!(
                "{:?} {}{}",
                s.kind,
                s.name,
                if s.strict { ", strict" } else { "" }
            )
        });
        let n = &r.counters;
        let rejected: u64 = n.rejected.iter().map(|c| c.get()).sum();
        let reasons: Vec<String> = Reject::ALL
            .iter()
            .zip(&n.rejected)
            .filter(|(_, c)| c.get() > 0)
            .map(|(r, c)| format!("{} {}", r.as_str(), c.get()))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td>\
             <td class=n>{}</td><td class=n>{}</td><td class=n title=\"{}\">{}</td></tr>",
            esc(&c.name),
            esc(&if hostnames.is_empty() { "any".to_string() } else { hostnames.join(", ") }),
            esc(&clusters.join(", ")),
            esc(&session),
            n.created.get(),
            n.routed.get(),
            n.failed_open.get(),
            n.failed_closed.get(),
            esc(&reasons.join(", ")),
            rejected
        );
    }
    h.push_str("</table>");
}

fn clusters(h: &mut String, gw: &Gateway) {
    h.push_str("<h2>Clusters</h2>");
    for c in &gw.clusters {
        let set = c.backends();
        let healthy = set.backends.iter().filter(|b| b.is_healthy()).count();
        let _ = write!(
            h,
            "<h3 id=\"cluster-{0}\">{0} <small>{1} of {2} backends available{3}</small></h3>\
             <table><tr><th>backend</th><th>address</th><th>state</th><th>health</th>\
             <th>ejected</th><th>weight</th><th>source</th><th>sessions routed</th></tr>",
            esc(&c.config.name),
            healthy,
            set.backends.len(),
            match &c.config.discovery {
                Some(d) => format!(", discovered from {}", esc(&d.name)),
                None => String::new(),
            }
        );
        for b in &set.backends {
            backend_row(h, b);
        }
        h.push_str("</table>");
    }
}

fn backend_row(h: &mut String, b: &Backend) {
    let state_class = match b.state {
        BackendState::Active => "ok",
        BackendState::Draining => "warn",
        BackendState::Disabled => "bad",
    };
    let (health_class, health) = if b.member.passes_probes() {
        ("ok", "healthy")
    } else {
        ("bad", "unhealthy")
    };
    let ejected = b.member.outlier.ejected_flag();
    let _ = write!(
        h,
        "<tr><td>{}</td><td>{}</td><td class={state_class}>{}</td><td class={health_class}>{health}</td>\
         <td class={}>{}</td><td class=n>{}</td><td>{}</td><td class=n>{}</td></tr>",
        esc(&b.id),
        esc(&b.address),
        b.state.as_str(),
        if ejected { "bad" } else { "ok" },
        yes_no(ejected),
        b.weight,
        b.source.as_str(),
        b.member.sessions_routed.get()
    );
}

fn yes_no(v: bool) -> &'static str {
    if v {
        "yes"
    } else {
        "no"
    }
}

/// `text` safe inside HTML text and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            esc("<b a=\"1\">x & 'y'</b>"),
            "&lt;b a=&quot;1&quot;&gt;x &amp; &#39;y&#39;&lt;/b&gt;"
        );
    }
}
