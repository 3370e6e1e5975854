//! A real DNS server for the discovery tests: dnsmasq on a loopback port, answering from a
//! hosts file it reads again on SIGHUP (A records) and from `--srv-host` records; killed on drop.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port, signal, TempDir};

/// An SRV record: `(name, target, port, weight)`.
pub type Srv<'a> = (&'a str, &'a str, u16, u16);

/// dnsmasq, authoritative for the names it is given, asking no one else.
pub struct DnsServer {
    child: Option<Child>,
    dir: TempDir,
    pub addr: SocketAddr,
    srv: Vec<String>,
}

impl DnsServer {
    /// Starts dnsmasq answering `hosts` (`(ip, name)`) and `srv`.
    pub fn start(hosts: &[(&str, &str)], srv: &[Srv<'_>]) -> DnsServer {
        let mut dns = Self::prepared(hosts, srv);
        dns.run();
        dns
    }

    /// As [`DnsServer::start`], not started yet: its port answers nothing until `restart`.
    pub fn prepared(hosts: &[(&str, &str)], srv: &[Srv<'_>]) -> DnsServer {
        let dir = TempDir::new();
        let srv = srv
            .iter()
            .map(|(name, target, port, weight)| {
                format!("--srv-host={name},{target},{port},0,{weight}")
            })
            .collect();
        let dns = DnsServer {
            child: None,
            addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            dir,
            srv,
        };
        dns.set_hosts(hosts);
        dns
    }

    fn run(&mut self) {
        let bin = ["dnsmasq", "/usr/sbin/dnsmasq"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect("dnsmasq (scripts/test-deps.sh installs dnsmasq-base)");
        let log = std::fs::File::create(self.dir.path("dnsmasq.log")).unwrap();
        let child = Command::new(bin)
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--pid-file=",
                "--user=root",
                "--local-ttl=0",
                "--log-facility=-",
            ])
            .arg(format!("--port={}", self.addr.port()))
            .arg(format!("--addn-hosts={}", self.dir.path("hosts").display()))
            .args(&self.srv)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn dnsmasq");
        self.child = Some(child);
        let addr = self.addr;
        eventually(Duration::from_secs(10), "dnsmasq to answer", || {
            answers(addr).then_some(())
        });
    }

    /// Replaces the A records (`(ip, name)`) and has dnsmasq read them again.
    pub fn set_hosts(&self, hosts: &[(&str, &str)]) {
        let text: String = hosts
            .iter()
            .map(|(ip, name)| format!("{ip} {name}\n"))
            .collect();
        std::fs::write(self.dir.path("hosts"), text).unwrap();
        if let Some(child) = &self.child {
            signal(child.id(), "HUP");
        }
    }

    /// Stops the server (its port then answers nothing).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

/// Whether a DNS server at `addr` answers a query (for any name).
fn answers(addr: SocketAddr) -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // A query for `probe.` type A, class IN.
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x05probe\x00\x00\x01\x00\x01");
    if socket.send_to(&query, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    socket
        .recv(&mut buf)
        .is_ok_and(|n| n >= 12 && buf[..2] == [0x12, 0x34])
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
