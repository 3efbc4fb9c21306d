//! `capstan`: Kubernetes in one binary. This file parses the command line, sets up logging
//! and runs the chosen subcommand.

mod agent;
mod config;
mod image;
mod node_services;
mod node_token;
mod server;
mod signals;
mod sim_nodes;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Capstan: a lightweight Kubernetes in one Rust binary.
#[derive(Debug, Parser)]
#[command(name = "capstan", version, about, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a control-plane server: the datastore and the Kubernetes API.
    Server(server::ServerArgs),
    /// Join a server as a node: register it, keep its heartbeats and run its pods.
    Agent(agent::AgentArgs),
    /// Simulate nodes: hollow kubelets that register, heartbeat and report pods Running
    /// without containers, for scale tests (like kwok).
    SimNodes(sim_nodes::SimNodesArgs),
    /// Images for a node's runtime without a registry: import archives, build busybox.
    Image(image::ImageArgs),
}

fn main() -> ExitCode {
    let args = match config::with_config_file(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::SimNodes(args) => sim_nodes::run(args).await,
            Command::Image(args) => image::run(args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole chain of causes on one line.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` chooses the levels (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}
