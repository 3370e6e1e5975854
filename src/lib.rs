//! tether: an HTTP load balancer with signed, server-enforced session persistence, on Pingora.
//!
//! Modules, one concern each: [`config`] (the YAML file), [`cluster`] (backends, health,
//! selection), [`routing`] (which route takes a request), [`session`] and [`token`] (session
//! persistence), [`gateway`] (all of it at run time), [`downstream`] (client connections),
//! [`proxy`] (the `ProxyHttp` phases), [`metrics`], [`admin`] (the admin listener) and
//! [`server`] (wiring them into a Pingora server); [`convert`] (other systems' manifests to a
//! tether config).
// One exception, reasoned where it is: a listening socket handed over by an upgrade (`-u`).
#![deny(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod cluster;
pub mod config;
pub mod convert;
pub mod downstream;
pub mod gateway;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod session;
pub mod tls;
pub mod token;
