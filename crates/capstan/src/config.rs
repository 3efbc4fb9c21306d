//! `--config FILE`: flags from a YAML file, as k3s reads `/etc/rancher/k3s/config.yaml`.
//! Each key is a flag's long name (`https-listen-port: 6444`, `disable-agent: true`); lists
//! repeat the flag. The file's flags go before the command line's, so the command line wins.

use anyhow::{Context, bail};
use std::ffi::OsString;
use std::path::PathBuf;

/// The arguments with the config file's flags inserted after the subcommand.
/// Only `capstan server` reads a config file; the other subcommands' flags are their own.
pub(crate) fn with_config_file(args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    if args.get(1).is_none_or(|subcommand| subcommand != "server") {
        return Ok(args);
    }
    let Some(path) = config_path(&args) else { return Ok(args) };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let flags = flags(&text).with_context(|| format!("config file {}", path.display()))?;
    // Program name and subcommand first, then the file's flags, then the command line's.
    let mut merged: Vec<OsString> = args.iter().take(2).cloned().collect();
    merged.extend(flags.into_iter().map(OsString::from));
    merged.extend(args.into_iter().skip(2));
    Ok(merged)
}

fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = iter.next() {
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("CAPSTAN_CONFIG_FILE").map(PathBuf::from)
}

/// The flags a config file stands for.
fn flags(text: &str) -> anyhow::Result<Vec<String>> {
    let document: serde_yaml::Value = serde_yaml::from_str(text).context("not valid YAML")?;
    let mapping = match document {
        serde_yaml::Value::Mapping(mapping) => mapping,
        serde_yaml::Value::Null => return Ok(Vec::new()),
        _ => bail!("the top level must be a mapping of flag names to values"),
    };
    let mut flags = Vec::new();
    for (key, value) in mapping {
        let serde_yaml::Value::String(name) = key else {
            bail!("keys must be flag names");
        };
        if name == "config" {
            bail!("{name}: a config file cannot name another");
        }
        let values = match value {
            serde_yaml::Value::Sequence(items) => items,
            single => vec![single],
        };
        for value in values {
            match value {
                serde_yaml::Value::Bool(true) => flags.push(format!("--{name}")),
                serde_yaml::Value::Bool(false) => {}
                serde_yaml::Value::String(text) => flags.push(format!("--{name}={text}")),
                serde_yaml::Value::Number(number) => flags.push(format!("--{name}={number}")),
                _ => bail!("{name}: expected a string, number, boolean or a list of them"),
            }
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_keys_into_flags() {
        let text = "https-listen-port: 6444\ndisable-agent: true\nbind-address: 127.0.0.1\n";
        assert_eq!(
            flags(text).unwrap(),
            ["--https-listen-port=6444", "--disable-agent", "--bind-address=127.0.0.1"]
        );
        assert!(flags("- a\n- b\n").is_err());
        assert!(flags("x: {a: 1}\n").is_err());
        assert!(flags("").unwrap().is_empty());
    }

    #[test]
    fn the_command_line_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "https-listen-port: 1\n").unwrap();
        let args: Vec<OsString> =
            ["capstan", "server", "--config", file.to_str().unwrap(), "--https-listen-port", "2"]
                .iter()
                .map(OsString::from)
                .collect();
        let merged = with_config_file(args).unwrap();
        assert_eq!(merged[2], "--https-listen-port=1");
        assert_eq!(merged.last().unwrap(), "2");
    }

    #[test]
    fn other_subcommands_ignore_config_files() {
        let args: Vec<OsString> =
            ["capstan", "sim-nodes", "--config", "/nonexistent.yaml", "--count", "2"]
                .iter()
                .map(OsString::from)
                .collect();
        assert_eq!(with_config_file(args.clone()).unwrap(), args);
    }
}
