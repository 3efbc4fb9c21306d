//! What every controller shares: the API client, the configuration, and Event recorders
//! named after upstream's controllers.

use capstan_kube::events::Recorder;

/// How the controller manager runs.
#[derive(Debug, Clone, Default)]
pub struct ControllerManagerConfig {
    /// The cluster CA certificate (PEM) published as `kube-root-ca.crt` in every namespace.
    pub root_ca_pem: String,
}

/// Shared by every controller.
pub struct Context {
    pub client: kube::Client,
    pub config: ControllerManagerConfig,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(client: kube::Client, config: ControllerManagerConfig) -> Context {
        Context { client, config }
    }

    /// An Event recorder reporting as `controller` (upstream's names:
    /// `replicaset-controller`, `namespace-controller`, …).
    pub fn recorder(&self, controller: &str) -> Recorder {
        Recorder::new(self.client.clone(), controller)
    }
}
