//! The `tether` binary: parse flags, load and check the config, run the server.

use std::process::ExitCode;

/// mimalloc rather than glibc malloc: the proxy allocates and frees small buffers per request,
/// where glibc's malloc showed ~12% of CPU under load (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use tether::config::Config;
use tether::server::{self, StartMode};

/// Pingora's flags, plus `--version`.
#[derive(Parser, Debug)]
#[command(
    name = "tether",
    version,
    about = "HTTP load balancer with session persistence"
)]
struct Cli {
    /// The config file.
    #[arg(short, long, default_value = "/etc/tether/tether.yaml")]
    conf: String,
    /// Check the config and exit.
    #[arg(short, long)]
    test: bool,
    /// Take the listening sockets over from a running tether (zero-downtime upgrade/reload).
    #[arg(short, long)]
    upgrade: bool,
    /// Run in the background.
    #[arg(short, long)]
    daemon: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tether::logging::init();
    let config = match Config::load(&cli.conf) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tether: configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &config.warnings {
        eprintln!("tether: warning: {}:{warning}", cli.conf);
    }
    if cli.test {
        println!("tether: configuration file {} is valid", cli.conf);
        return ExitCode::SUCCESS;
    }
    let mode = StartMode {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
    };
    match server::build(config, mode) {
        Ok(server) => {
            server.run(pingora_core::server::RunArgs::default());
            // What the log flusher had not written yet (a fast shutdown does not wait for it).
            tether::logging::flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tether: cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}
