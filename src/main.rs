//! The `tether` binary: parse flags, load and check the config, run the server.

use std::process::ExitCode;

/// mimalloc rather than glibc malloc: the proxy allocates and frees small buffers per request,
/// where glibc's malloc showed ~12% of CPU under load (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use tether::config::Config;
use tether::server::{self, StartMode};

/// Pingora's flags, plus `--version`, and `tether convert`.
#[derive(Parser, Debug)]
#[command(
    name = "tether",
    version,
    about = "HTTP load balancer with session persistence",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print a tether config made from Gateway API (Gateway, HTTPRoute, GRPCRoute), FSM
    /// SessionStickyPolicy and Envoy stateful_session manifests.
    Convert {
        /// Name server of every DNS discovery (e.g. the cluster DNS, 10.96.0.10:53).
        #[arg(long, value_name = "IP:PORT")]
        nameserver: Vec<String>,
        /// Address of the listener for routes whose Gateway is not among the files.
        #[arg(long, value_name = "IP:PORT")]
        listen: Option<String>,
        /// Namespace of manifests that name none (as `kubectl apply -n`); default `default`.
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Manifests (YAML, one or more documents each).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

/// Exit status of `tether convert` when the input cannot be converted.
const CONVERT_FAILED: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Convert {
        nameserver,
        listen,
        namespace,
        files,
    }) = &cli.command
    {
        let options = tether::convert::Options {
            nameservers: nameserver.clone(),
            listen: listen.clone(),
            namespace: namespace.clone(),
        };
        let paths: Vec<&std::path::Path> = files.iter().map(|f| f.as_path()).collect();
        return match tether::convert::convert(&paths, &options) {
            Ok(config) => {
                print!("{config}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tether convert: {e}");
                ExitCode::from(CONVERT_FAILED)
            }
        };
    }
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
