//! Choosing a backend: `--datastore-endpoint` values and opening the store they name.

use crate::{EmbeddedConfig, EmbeddedStore, EtcdConfig, EtcdStore, Result, Store, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the datastore lives, as given by `--datastore-endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatastoreEndpoint {
    /// `sqlite:///var/lib/capstan/server/db/state.db`: the embedded store in this file.
    Sqlite(PathBuf),
    /// `etcd://host1:2379,host2:2379`: an etcd cluster (plain HTTP client URLs).
    Etcd(Vec<String>),
}

impl std::str::FromStr for DatastoreEndpoint {
    type Err = StoreError;

    fn from_str(endpoint: &str) -> Result<Self> {
        if let Some(path) = endpoint.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::Config(format!("{endpoint:?} names no database file")));
            }
            return Ok(DatastoreEndpoint::Sqlite(PathBuf::from(path)));
        }
        if let Some(hosts) = endpoint.strip_prefix("etcd://") {
            let endpoints: Vec<String> = hosts
                .split(',')
                .map(str::trim)
                .filter(|host| !host.is_empty())
                .map(|host| format!("http://{host}"))
                .collect();
            if endpoints.is_empty() {
                return Err(StoreError::Config(format!("{endpoint:?} names no etcd host")));
            }
            return Ok(DatastoreEndpoint::Etcd(endpoints));
        }
        Err(StoreError::Config(format!(
            "unknown datastore endpoint {endpoint:?}: expected sqlite://<file> or etcd://<host:port>[,...]"
        )))
    }
}

/// Opens the datastore an endpoint names. `etcd_prefix` is the key prefix in etcd.
pub async fn open(endpoint: &DatastoreEndpoint, etcd_prefix: &str) -> Result<Arc<dyn Store>> {
    Ok(match endpoint {
        DatastoreEndpoint::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Config(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            Arc::new(EmbeddedStore::open(EmbeddedConfig::new(path.clone())).await?)
        }
        DatastoreEndpoint::Etcd(endpoints) => {
            let mut config = EtcdConfig::new(endpoints.clone());
            config.prefix = etcd_prefix.to_owned();
            Arc::new(EtcdStore::connect(config).await?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::DatastoreEndpoint;

    #[test]
    fn parses_both_kinds_of_endpoint() {
        let sqlite: DatastoreEndpoint = "sqlite:///var/lib/capstan/db/state.db".parse().unwrap();
        assert_eq!(sqlite, DatastoreEndpoint::Sqlite("/var/lib/capstan/db/state.db".into()));
        let etcd: DatastoreEndpoint = "etcd://10.0.0.1:2379, 10.0.0.2:2379".parse().unwrap();
        assert_eq!(
            etcd,
            DatastoreEndpoint::Etcd(vec![
                "http://10.0.0.1:2379".into(),
                "http://10.0.0.2:2379".into()
            ])
        );
    }

    #[test]
    fn rejects_unknown_or_empty_endpoints() {
        for bad in ["mysql://x", "sqlite://", "etcd://", "etcd://,", "state.db"] {
            let error = bad.parse::<DatastoreEndpoint>().unwrap_err().to_string();
            assert!(error.contains("datastore"), "{bad}: {error}");
        }
    }
}
