//! `hearth`: parses the command line, sets up logging, and hands over to a subcommand in
//! [`cmd`]. All behaviour lives in the library crates.

#![deny(unsafe_code)]

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hearth", version, about = "Run untrusted code fast and safely")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once; boxing would only add noise
enum Command {
    /// Run one program in a fresh sandbox, here, without any service.
    Run(cmd::run::Args),
    /// Say what works on this host (namespaces, cgroups, seccomp, KVM, drivers, languages).
    Doctor(cmd::doctor::Args),
    /// Everything in one process: a nats-server on loopback (unless --nats), a gateway and
    /// an executor. Prints the URL.
    Up(cmd::up::Args),
    /// The HTTP/WebSocket gateway alone, against a given NATS.
    Gateway(cmd::gateway::Args),
    /// An executor alone: takes runs from NATS and runs them in warm sandboxes.
    Executor(cmd::executor::Args),
    /// The guest image of the VM drivers (qemu, firecracker): build it, or say what is in it.
    Image(cmd::image::Args),
    /// A whole cluster on this machine (clustered nats-servers, gateways, executors as
    /// separate processes), and a load client that checks every answer.
    #[command(subcommand)]
    Cluster(cmd::cluster::Command),
    /// Measure a running hearth: latency, throughput, connections, beside the bare floor.
    Bench(cmd::bench::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hearth: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(70);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => cmd::run::run(args).await,
            Command::Doctor(args) => cmd::doctor::run(args).await,
            Command::Up(args) => cmd::up::run(args).await,
            Command::Gateway(args) => cmd::gateway::run(args).await,
            Command::Executor(args) => cmd::executor::run(args).await,
            Command::Image(args) => cmd::image::run(args).await,
            Command::Cluster(command) => cmd::cluster::run(command).await,
            Command::Bench(args) => cmd::bench::run(args).await,
        }
    });
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("hearth: {e:#}");
            std::process::ExitCode::from(70)
        }
    }
}
