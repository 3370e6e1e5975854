//! Real clients, as users run them: `curl` (HTTP/1.1, HTTP/2 over TLS, h2c) and
//! `openssl s_client` (versions, ALPN, SNI, the certificate served).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A `curl` command line being built.
#[derive(Clone)]
pub struct Curl {
    args: Vec<String>,
}

/// What curl received.
#[derive(Debug)]
pub struct CurlResponse {
    pub status: u16,
    /// `1.1`, `2`, ...
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl CurlResponse {
    /// The first header of that name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header of that name.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `x-backend` header (which test backend answered).
    pub fn backend(&self) -> String {
        self.header("x-backend").unwrap_or("-").to_string()
    }
}

impl Default for Curl {
    fn default() -> Self {
        Curl::new()
    }
}

impl Curl {
    /// `curl -sS` with a 10 s limit.
    pub fn new() -> Curl {
        Curl {
            args: ["-sS", "--max-time", "10", "-i"].map(String::from).to_vec(),
        }
    }

    fn arg(mut self, args: &[&str]) -> Curl {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Trusts `ca` (and nothing else).
    pub fn ca(self, ca: &Path) -> Curl {
        self.arg(&["--cacert", &ca.display().to_string()])
    }

    /// Resolves `host` to `addr` (so the URL's host is the SNI and `Host`).
    pub fn resolve(self, host: &str, addr: SocketAddr) -> Curl {
        let spec = format!("{host}:{}:{}", addr.port(), addr.ip());
        self.arg(&["--resolve", &spec])
    }

    /// HTTP/1.1 only.
    pub fn http1(self) -> Curl {
        self.arg(&["--http1.1"])
    }

    /// HTTP/2 (by ALPN over TLS).
    pub fn http2(self) -> Curl {
        self.arg(&["--http2"])
    }

    /// HTTP/2 with prior knowledge (h2c on a plain URL).
    pub fn prior_knowledge(self) -> Curl {
        self.arg(&["--http2-prior-knowledge"])
    }

    /// Adds a request header.
    pub fn header(self, header: &str) -> Curl {
        self.arg(&["-H", header])
    }

    /// Reads and writes cookies in `jar`.
    pub fn jar(self, jar: &Path) -> Curl {
        let jar = jar.display().to_string();
        self.arg(&["-b", &jar, "-c", &jar])
    }

    /// Any other curl arguments.
    pub fn args(self, args: &[&str]) -> Curl {
        self.arg(args)
    }

    /// Requests `url`; `Err` with curl's message when it fails.
    pub fn get(&self, url: &str) -> Result<CurlResponse, String> {
        let out = Command::new("curl")
            .args(&self.args)
            .args(["-w", "%{stderr}version=%{http_version}\n", url])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("curl: {e} (is curl installed? scripts/test-deps.sh)"))?;
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if !out.status.success() {
            return Err(stderr);
        }
        let version = stderr
            .lines()
            .find_map(|l| l.strip_prefix("version="))
            .unwrap_or("")
            .to_string();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        parse_response(&text, version).ok_or_else(|| format!("unparsable response: {text}"))
    }
}

impl Curl {
    /// Requests every URL in one curl run (with `--parallel`, over as few connections as it
    /// can): per transfer `(status, HTTP version, new connections)`, and curl's stderr.
    pub fn get_all(&self, urls: &[String]) -> (Vec<(u16, String, u64)>, String) {
        let mut cmd = Command::new("curl");
        cmd.args(&self.args).args([
            "-w",
            "transfer %{http_code} %{http_version} %{num_connects}\n",
        ]);
        for url in urls {
            cmd.args(["-o", "/dev/null", url]);
        }
        let out = cmd.stdin(Stdio::null()).output().expect("curl");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let transfers = stdout
            .lines()
            .filter_map(|l| {
                let mut parts = l.strip_prefix("transfer ")?.split_whitespace();
                Some((
                    parts.next()?.parse().ok()?,
                    parts.next()?.to_string(),
                    parts.next()?.parse().ok()?,
                ))
            })
            .collect();
        (transfers, String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// The last header section of curl's `-i` output (1xx sections come before it) and the body.
fn parse_response(text: &str, version: String) -> Option<CurlResponse> {
    let mut rest = text;
    loop {
        let (head, body) = rest.split_once("\r\n\r\n")?;
        let mut lines = head.lines();
        let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        if (100..200).contains(&status) && body.starts_with("HTTP/") {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        return Some(CurlResponse {
            status,
            version,
            headers,
            body: body.to_string(),
        });
    }
}

/// What `openssl s_client` saw of a handshake.
#[derive(Debug)]
pub struct Handshake {
    /// `TLSv1.2`, `TLSv1.3`; `None` when the handshake failed.
    pub version: Option<String>,
    /// The protocol chosen by ALPN.
    pub alpn: Option<String>,
    /// The served certificate's common name.
    pub subject_cn: Option<String>,
    /// Everything openssl printed.
    pub output: String,
}

/// Runs `openssl s_client` against `addr` with SNI `sni` (none when `None`) and `extra`
/// arguments (`-tls1_2`, `-alpn h2`, ...).
pub fn s_client(addr: SocketAddr, sni: Option<&str>, extra: &[&str]) -> Handshake {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string()]);
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client (is openssl installed? scripts/test-deps.sh)");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let version = output.lines().find_map(|l| {
        let rest = l.strip_prefix("New, ")?;
        let version = rest.split(',').next()?.trim();
        (version != "(NONE)").then(|| version.to_string())
    });
    let alpn = output
        .lines()
        .find_map(|l| l.strip_prefix("ALPN protocol: "))
        .map(str::to_string);
    let subject_cn = output
        .lines()
        .find_map(|l| l.strip_prefix("subject=")?.split("CN = ").nth(1))
        .map(|cn| cn.split(',').next().unwrap_or(cn).trim().to_string());
    Handshake {
        version,
        alpn,
        subject_cn,
        output,
    }
}

/// A file in the test-clients folder (`tests/clients/`).
pub fn client_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// An HTTP/1.1 connection over TLS kept open across requests (rustls, trusting `ca` only).
pub struct HeldTls {
    stream: std::io::BufReader<
        tokio_rustls::rustls::StreamOwned<
            tokio_rustls::rustls::ClientConnection,
            std::net::TcpStream,
        >,
    >,
    host: String,
}

impl HeldTls {
    /// Connects to `addr` as `host` (SNI and `Host`) and completes the handshake.
    pub fn connect(addr: SocketAddr, host: &str, ca: &Path) -> HeldTls {
        use std::sync::Arc;
        use tokio_rustls::rustls::{self, pki_types::pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        HeldTls {
            stream: std::io::BufReader::new(stream),
            host: host.to_string(),
        }
    }

    /// The common name of the certificate this connection was served.
    pub fn peer_cn(&self) -> String {
        let certs = self.stream.get_ref().conn.peer_certificates().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(certs[0].as_ref()).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        cn.as_str().unwrap().to_string()
    }

    /// `GET path` on this connection: the status and the body.
    pub fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        use std::io::Write;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.stream.get_mut().write_all(request.as_bytes())?;
        self.stream.get_mut().flush()?;
        let head = super::read_message_head(&mut self.stream)
            .ok_or_else(|| std::io::Error::other("no response"))?;
        let status = head.status;
        let body = super::read_body(&mut self.stream, &head.headers, false)
            .ok_or_else(|| std::io::Error::other("no body"))?;
        Ok((status, String::from_utf8_lossy(&body).to_string()))
    }
}

/// The Python the client scripts run with (`TETHER_TEST_PYTHON`, default `python3`).
pub fn python() -> String {
    std::env::var("TETHER_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs client script `name` with `args`, `stdin` as its input; its standard output, or a
/// panic with everything it printed.
pub fn run_client(name: &str, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(python())
        .arg(client_script(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test-deps.sh installs what the clients need)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{name} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A server script (`tests/clients/`) that prints its port and serves until dropped.
pub struct ScriptServer {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl ScriptServer {
    /// Starts script `name` with `args` and reads the port it prints.
    pub fn start(name: &str, args: &[&str]) -> ScriptServer {
        use std::io::BufRead;
        let mut child = Command::new(python())
            .arg(client_script(name))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 (scripts/test-deps.sh installs what the servers need)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} printed `{line}`, not a port"));
        ScriptServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
