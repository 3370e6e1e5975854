//! What ships in `deploy/`: the Kubernetes manifests parse and reference each other (no cluster
//! runs here) and their config passes `tether -t`; the alert rules pass `promtool check rules`;
//! a real Prometheus scrapes a running tether and finds every metric the Grafana dashboard uses.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::gateway::{Discovery, Gateway, Route};
use common::*;
use serde_yaml::Value;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(deploy(path)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut at = v;
    for key in path {
        at = match key.parse::<usize>() {
            Ok(i) => &at[i],
            Err(_) => &at[*key],
        };
    }
    at.as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string: {at:?}"))
}

#[test]
fn the_kubernetes_manifests_reference_each_other() {
    let kustomization = yaml("kubernetes/kustomization.yaml");
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(deploy("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization.yaml lists every manifest");

    let namespace = text(&yaml("kubernetes/namespace.yaml"), &["metadata", "name"]).to_string();
    for file in &present {
        let doc = yaml(&format!("kubernetes/{file}"));
        assert!(
            doc["apiVersion"].is_string() && doc["kind"].is_string(),
            "{file}"
        );
        if doc["kind"] != "Namespace" {
            assert_eq!(text(&doc, &["metadata", "namespace"]), namespace, "{file}");
        }
    }

    let deployment = yaml("kubernetes/deployment.yaml");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let pdb = yaml("kubernetes/pdb.yaml");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    let service = yaml("kubernetes/service.yaml");
    assert_eq!(&service["spec"]["selector"], labels);

    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let port_named = |name: &str| -> u64 {
        container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port `{name}`"))["containerPort"]
            .as_u64()
            .unwrap()
    };
    let target = text(&service, &["spec", "ports", "0", "targetPort"]);
    port_named(target);

    // The config comes from the ConfigMap, mounted where the args point.
    let configmap = yaml("kubernetes/configmap.yaml");
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["configMap"].is_mapping())
        .expect("a configMap volume");
    assert_eq!(
        text(volume, &["configMap", "name"]),
        text(&configmap, &["metadata", "name"])
    );
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the config volume is mounted");
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let conf_path = args[args.iter().position(|a| *a == "-c").unwrap() + 1];
    let key = conf_path
        .strip_prefix(&format!("{}/", text(mount, &["mountPath"])))
        .expect("-c points into the config mount");
    let config = text(&configmap, &["data", key]);

    // The Secret holds every key the environment takes.
    let secret = yaml("kubernetes/secret.yaml");
    let mut env = Vec::new();
    for var in container["env"].as_sequence().unwrap() {
        let from = &var["valueFrom"]["secretKeyRef"];
        assert_eq!(from["name"], secret["metadata"]["name"]);
        let value = text(&secret, &["stringData", from["key"].as_str().unwrap()]);
        env.push((text(var, &["name"]).to_string(), value.to_string()));
    }

    // Probes on /healthz of the admin port the config listens on.
    let config_yaml: Value = serde_yaml::from_str(config).unwrap();
    let admin: SocketAddr = text(&config_yaml, &["admin", "listen"]).parse().unwrap();
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(text(get, &["path"]), "/healthz");
        assert_eq!(port_named(text(get, &["port"])), u64::from(admin.port()));
    }
    // The pod stops after it left the endpoints, and within its grace period.
    let pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("a preStop pause");
    let stop = config_yaml["grace_period_seconds"].as_u64().unwrap()
        + config_yaml["graceful_shutdown_timeout_seconds"]
            .as_u64()
            .unwrap();
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > pause + stop);

    // Backends come from DNS discovery of the headless Service.
    let backends = yaml("kubernetes/backends-service.yaml");
    assert_eq!(backends["spec"]["clusterIP"], "None");
    let discovery = &config_yaml["clusters"][0]["discovery"];
    assert_eq!(
        text(discovery, &["name"]),
        format!(
            "{}.{namespace}.svc.cluster.local",
            text(&backends, &["metadata", "name"])
        )
    );
    assert_eq!(discovery["port"], backends["spec"]["ports"][0]["port"]);

    // And tether accepts the config, with the Secret's values in its environment.
    let dir = TempDir::new();
    std::fs::write(dir.path("tether.yaml"), config).unwrap();
    let out = Command::new(tether_bin())
        .args(["-t", "-c"])
        .arg(dir.path("tether.yaml"))
        .envs(env)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn the_alert_rules_pass_promtool() {
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(deploy("prometheus/tether-alerts.yml"))
        .output()
        .expect("promtool (scripts/test-deps.sh installs prometheus)");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
}

/// A Prometheus server scraping `target` every second, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = TempDir::new();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n  - job_name: tether\n    static_configs: [{{targets: [\"{target}\"]}}]\n",
            deploy("prometheus/tether-alerts.yml").display()
        );
        std::fs::write(dir.path("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus (scripts/test-deps.sh installs it)");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The result list of an instant query (`None` if the query failed).
    fn query(&self, promql: &str) -> Option<Vec<serde_json::Value>> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let r = get(self.addr, &path, &[]).ok()?;
        let body: serde_json::Value = serde_json::from_str(&r.text()).ok()?;
        (body["status"] == "success").then(|| {
            body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_every_metric_the_dashboard_uses() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/tether-dashboard.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    let metrics: BTreeSet<String> = exprs
        .iter()
        .flat_map(|e| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("tether_"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(metrics.len() >= 12, "{metrics:?}");

    // A tether with TLS, sessions and a discovery cluster, so that every series exists.
    let ca = TestCa::new();
    let cert = ca.issue("shop", &["shop.test"]);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = Gateway::new()
        .tls("public", &[&cert])
        .cluster("app", &[("a", a.addr), ("b", b.addr)])
        .discovered(
            "found",
            Discovery {
                name: "nothing.test".into(),
                port: Some(80),
                srv: false,
                interval_ms: 1000,
                nameserver: "127.0.0.1:9".parse().unwrap(),
            },
        )
        .route(Route::new("app").to("app", 1).cookie("sid"))
        .route(
            Route::new("found")
                .path("PathPrefix", "/found")
                .to("found", 1),
        )
        .start();
    let curl = Curl::new().ca(&ca.ca_file()).resolve("shop.test", t.listen);
    for _ in 0..3 {
        let url = format!("https://shop.test:{}/", t.listen.port());
        curl.get(&url).expect("a request over TLS");
    }
    let prometheus = Prometheus::start(t.admin);
    eventually(
        Duration::from_secs(30),
        "Prometheus scraping tether",
        || {
            let up = prometheus.query("up{job=\"tether\"} == 1")?;
            (!up.is_empty()).then_some(())
        },
    );
    for metric in &metrics {
        let found = eventually(Duration::from_secs(10), metric, || {
            prometheus
                .query(&format!("count({metric})"))
                .filter(|r| !r.is_empty())
        });
        eprintln!("{metric}: {} series", found[0]["value"][1]);
    }
    // Every panel's query is valid PromQL.
    for expr in &exprs {
        let q = expr.replace("$__rate_interval", "1m");
        assert!(prometheus.query(&q).is_some(), "invalid: {q}");
    }
}
