//! DNS discovery against a real DNS server (dnsmasq on loopback), backends on loopback addresses
//! 127.0.0.2, .3, .4 sharing one port: backends appear and leave under load, a DNS server that
//! stops leaves the set as it was, SRV records bring ports and weights, two tethers share
//! sessions, and tether starts without an answer.

mod common;

use std::collections::HashMap;
use std::thread;
use std::time::Duration;

use common::dns::DnsServer;
use common::gateway::{Discovery, Gateway, Route};
use common::load::Load;
use common::*;

const NAME: &str = "app.test";

fn dns_of(dns: &DnsServer, port: Option<u16>, srv: bool) -> Discovery {
    Discovery {
        name: if srv { "_http._tcp.app.test" } else { NAME }.into(),
        port,
        srv,
        interval_ms: 300,
        nameserver: dns.addr,
    }
}

fn gateway(discovery: Discovery) -> Gateway {
    Gateway::new()
        .discovered("app", discovery)
        .tcp_health("app", 300)
        .route(Route::new("app").to("app", 1).cookie("sid"))
}

/// Which backend answers each of `n` new sessions.
fn new_sessions(t: &Tether, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = get(t.listen, "/", &[]).unwrap();
        assert_eq!(r.status(), 200, "{}", r.text());
        *seen.entry(r.backend()).or_insert(0) += 1;
    }
    seen
}

#[test]
fn backends_follow_dns_under_load() {
    let a = Backend::start_at("a", "127.0.0.2:0");
    let port = a.addr.port();
    let _b = Backend::start_at("b", &format!("127.0.0.3:{port}"));
    let c = Backend::start_at("c", &format!("127.0.0.4:{port}"));
    let id = |ip: &str| format!("{ip}:{port}");
    let mut dns = DnsServer::start(&[("127.0.0.2", NAME), ("127.0.0.3", NAME)], &[]);
    let t = gateway(dns_of(&dns, Some(port), false)).start();
    let found = t.wait_backends("app", "two discovered backends, healthy", |bs| {
        bs.len() == 2 && bs.iter().all(|b| b["healthy"] == true)
    });
    assert_eq!(found, [id("127.0.0.2"), id("127.0.0.3")]);
    assert!(t
        .backends_of("app")
        .iter()
        .all(|b| b["source"] == "discovery"));
    t.assert_metric("tether_discovery_backends{cluster=\"app\"}", 2.0);
    t.assert_metric("tether_discovery_errors_total{cluster=\"app\"}", 0.0);
    let spread = new_sessions(&t, 10);
    assert_eq!((spread["a"], spread["b"]), (5, 5), "{spread:?}");

    // Under load (sessions following re-pins), a third backend appears ...
    let load = Load::start(t.listen, 6, 2, true);
    dns.set_hosts(&[
        ("127.0.0.2", NAME),
        ("127.0.0.3", NAME),
        ("127.0.0.4", NAME),
    ]);
    t.wait_backends("app", "the third backend, healthy", |bs| {
        bs.len() == 3 && bs.iter().all(|b| b["healthy"] == true)
    });
    let spread = new_sessions(&t, 30);
    assert_eq!(
        spread.get("c"),
        Some(&10),
        "new sessions reach it: {spread:?}"
    );

    // ... and the first leaves: its sessions move, nothing fails, it gets no more requests.
    dns.set_hosts(&[("127.0.0.3", NAME), ("127.0.0.4", NAME)]);
    let left = t.wait_backends("app", "the first backend gone", |bs| bs.len() == 2);
    assert_eq!(left, [id("127.0.0.3"), id("127.0.0.4")]);
    let served = a.requests();
    thread::sleep(Duration::from_millis(1000));
    let (ok, failed, wrong, _, repinned) = load.finish_all();
    eprintln!("load: {ok} ok, {failed} failed, {wrong} wrong, {repinned} re-pinned");
    assert_eq!((failed, wrong), (0, 0));
    assert!(ok > 100 && repinned >= 1, "{ok} ok, {repinned} re-pinned");
    assert_eq!(
        a.requests(),
        served,
        "requests reached a backend DNS dropped"
    );
    assert!(
        t.metric("tether_session_failed_open_total{route=\"app\"}")
            .unwrap()
            >= 1.0
    );

    // The DNS server stops: rounds fail, are counted, and the set stays.
    dns.stop();
    eventually(Duration::from_secs(10), "discovery errors counted", || {
        (t.metric("tether_discovery_errors_total{cluster=\"app\"}")? >= 2.0).then_some(())
    });
    assert_eq!(t.backends_of("app").len(), 2);
    let spread = new_sessions(&t, 4);
    assert_eq!((spread["b"], spread["c"]), (2, 2), "{spread:?}");
    assert!(t.log().contains("discovery of `app.test` failed"));
    // It comes back: answers are taken again.
    dns.restart();
    dns.set_hosts(&[("127.0.0.2", NAME)]);
    t.wait_backends("app", "the set of the new answer, probed", |bs| {
        bs.len() == 1 && bs[0]["healthy"] == true
    });
    assert_eq!(new_sessions(&t, 3)["a"], 3);
    drop(c);
}

#[test]
fn srv_records_bring_ports_and_weights() {
    let one = Backend::start("one");
    let two = Backend::start("two");
    let dns = DnsServer::start(
        &[("127.0.0.1", "one.app.test"), ("127.0.0.1", "two.app.test")],
        &[
            ("_http._tcp.app.test", "one.app.test", one.addr.port(), 3),
            ("_http._tcp.app.test", "two.app.test", two.addr.port(), 1),
        ],
    );
    let t = gateway(dns_of(&dns, None, true)).start();
    t.wait_backends("app", "two SRV targets", |bs| bs.len() == 2);
    let weights: HashMap<String, u64> = t
        .backends_of("app")
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_string(),
                b["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(weights[&one.addr.to_string()], 3);
    assert_eq!(weights[&two.addr.to_string()], 1);
    let spread = new_sessions(&t, 40);
    assert_eq!((spread["one"], spread["two"]), (30, 10), "{spread:?}");
}

#[test]
fn two_instances_honour_each_others_tokens() {
    let a = Backend::start_at("a", "127.0.0.2:0");
    let port = a.addr.port();
    let b = Backend::start_at("b", &format!("127.0.0.3:{port}"));
    let dns = DnsServer::start(&[("127.0.0.2", NAME), ("127.0.0.3", NAME)], &[]);
    let first = gateway(dns_of(&dns, Some(port), false)).start();
    let second = gateway(dns_of(&dns, Some(port), false)).start();
    for t in [&first, &second] {
        t.wait_backends("app", "both backends", |bs| {
            bs.len() == 2 && bs.iter().all(|b| b["healthy"] == true)
        });
    }
    for _ in 0..4 {
        let r = get(first.listen, "/", &[]).unwrap();
        let token = set_cookie_value(&r, "sid").unwrap();
        let again = get(second.listen, "/", &[&format!("Cookie: sid={token}")]).unwrap();
        assert_eq!(again.backend(), r.backend());
        assert!(
            set_cookie_value(&again, "sid").is_none(),
            "honoured, not re-issued"
        );
    }
    second.assert_metric("tether_session_routed_total{route=\"app\"}", 4.0);
    drop(b);
}

#[test]
fn tether_starts_without_an_answer_and_serves_once_one_comes() {
    let a = Backend::start_at("a", "127.0.0.2:0");
    let mut dns = DnsServer::prepared(&[("127.0.0.2", NAME)], &[]);
    let t = gateway(dns_of(&dns, Some(a.addr.port()), false)).start();
    let r = get(t.listen, "/", &[]).unwrap();
    assert_eq!(r.status(), 503, "no backend known yet");
    eventually(Duration::from_secs(10), "a failed round counted", || {
        (t.metric("tether_discovery_errors_total{cluster=\"app\"}")? >= 1.0).then_some(())
    });
    dns.restart();
    eventually(
        Duration::from_secs(10),
        "the backend found and served",
        || {
            get(t.listen, "/", &[])
                .ok()
                .filter(|r| r.status() == 200 && r.backend() == "a")
        },
    );
}

#[test]
fn hostile_answers_never_lose_the_set() {
    let a = Backend::start_at("a", "127.0.0.2:0");
    let port = a.addr.port();
    // 0.0.0.0 and a multicast address are no backends.
    let dns = DnsServer::start(
        &[("0.0.0.0", NAME), ("224.0.0.1", NAME), ("127.0.0.2", NAME)],
        &[],
    );
    let t = gateway(dns_of(&dns, Some(port), false)).start();
    let found = t.wait_backends("app", "the one usable address", |bs| {
        bs.len() == 1 && bs[0]["healthy"] == true
    });
    assert_eq!(found, [format!("127.0.0.2:{port}")]);
    // Thousands of records (a truncated UDP answer, then TCP): the first 1024 are taken.
    let many: Vec<String> = (0..3000)
        .map(|i| format!("127.1.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let hosts: Vec<(&str, &str)> = many.iter().map(|ip| (ip.as_str(), NAME)).collect();
    dns.set_hosts(&hosts);
    t.wait_backends("app", "the first 1024 of 3000 addresses", |bs| {
        bs.len() == 1024
    });
    t.wait_for_log(&["3000 addresses, taking the first 1024"]);
    // An answer of nothing usable keeps the last good set, counted as an error.
    dns.set_hosts(&[("0.0.0.0", NAME)]);
    eventually(
        Duration::from_secs(10),
        "an unusable answer counted",
        || (t.metric("tether_discovery_errors_total{cluster=\"app\"}")? >= 1.0).then_some(()),
    );
    assert_eq!(t.backends_of("app").len(), 1024);
    assert_eq!(get(t.admin, "/healthz", &[]).unwrap().status(), 200);
}

#[test]
fn a_cname_loop_is_a_failed_round() {
    let looping = ScriptServer::start("dns_hostile.py", &[]);
    let t = gateway(Discovery {
        name: NAME.into(),
        port: Some(80),
        srv: false,
        interval_ms: 300,
        nameserver: looping.addr,
    })
    .start();
    eventually(Duration::from_secs(10), "failed rounds counted", || {
        (t.metric("tether_discovery_errors_total{cluster=\"app\"}")? >= 2.0).then_some(())
    });
    assert!(t.backends_of("app").is_empty());
    assert_eq!(get(t.listen, "/", &[]).unwrap().status(), 503);
    assert_eq!(get(t.admin, "/healthz", &[]).unwrap().status(), 200);
}

#[test]
fn a_large_answer_that_changes_is_followed() {
    // 200 addresses do not fit a UDP answer: each round goes over TCP, where dnsmasq answers
    // from a child forked at connect time (stale if the connection were kept).
    let a = Backend::start_at("a", "127.0.0.2:0");
    let port = a.addr.port();
    let set =
        |third: u8| -> Vec<String> { (1..=200).map(|i| format!("127.5.{third}.{i}")).collect() };
    let first = set(1);
    let hosts: Vec<(&str, &str)> = first.iter().map(|ip| (ip.as_str(), NAME)).collect();
    let dns = DnsServer::start(&hosts, &[]);
    let t = gateway(dns_of(&dns, Some(port), false)).start();
    t.wait_backends("app", "the first 200", |bs| bs.len() == 200);
    for round in 2..=4u8 {
        let next = set(round);
        let hosts: Vec<(&str, &str)> = next.iter().map(|ip| (ip.as_str(), NAME)).collect();
        dns.set_hosts(&hosts);
        let prefix = format!("127.5.{round}.");
        t.wait_backends("app", "the changed 200", |bs| {
            bs.len() == 200
                && bs
                    .iter()
                    .all(|b| b["id"].as_str().unwrap().starts_with(&prefix))
        });
    }
}
