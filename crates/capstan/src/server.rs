//! `capstan server`: one control-plane process. Today it opens the datastore and keeps it
//! serving until stopped; the API server, scheduler and controllers join it in later work.

use anyhow::Context;
use capstan_store::DatastoreEndpoint;
use std::path::PathBuf;

/// Flags of `capstan server` (names follow k3s where k3s has the same flag).
#[derive(Debug, clap::Args)]
pub(crate) struct ServerArgs {
    /// Where Capstan keeps its state.
    #[arg(long, default_value = "/var/lib/capstan", env = "CAPSTAN_DATA_DIR")]
    data_dir: PathBuf,

    /// The datastore: `sqlite://<file>` (default: `<data-dir>/server/db/state.db`) or
    /// `etcd://host:port[,host:port...]`.
    #[arg(long, env = "CAPSTAN_DATASTORE_ENDPOINT")]
    datastore_endpoint: Option<String>,

    /// The prefix of Capstan's keys in etcd (ignored for sqlite).
    #[arg(long, default_value = "/registry")]
    etcd_prefix: String,
}

impl ServerArgs {
    fn endpoint(&self) -> anyhow::Result<DatastoreEndpoint> {
        match &self.datastore_endpoint {
            Some(endpoint) => endpoint.parse().context("--datastore-endpoint"),
            None => Ok(DatastoreEndpoint::Sqlite(self.data_dir.join("server/db/state.db"))),
        }
    }
}

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    // Installed before anything is announced: a signal sent right after "ready" must find the
    // handler in place, not the default action that kills the process mid-write.
    let shutdown = ShutdownSignals::install()?;
    let endpoint = args.endpoint()?;
    let store = capstan_store::open(&endpoint, &args.etcd_prefix)
        .await
        .with_context(|| format!("cannot open the datastore {}", describe(&endpoint)))?;
    let revision = store.current_revision().await.context("reading the datastore's revision")?;
    tracing::info!(datastore = %describe(&endpoint), revision, "datastore ready");
    tracing::warn!(
        "the API server is not part of this build yet: this server runs the datastore only"
    );
    shutdown.wait().await?;
    tracing::info!("shutting down");
    drop(store);
    Ok(())
}

fn describe(endpoint: &DatastoreEndpoint) -> String {
    match endpoint {
        DatastoreEndpoint::Sqlite(path) => format!("sqlite://{}", path.display()),
        DatastoreEndpoint::Etcd(endpoints) => format!("etcd {}", endpoints.join(",")),
    }
}

/// SIGINT and SIGTERM, caught from the moment `install` returns.
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Returns once either signal arrived.
    async fn wait(mut self) -> anyhow::Result<()> {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        Ok(())
    }
}
