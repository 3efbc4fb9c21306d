//! The node join token, in k3s's format `K10<sha256 of the CA PEM>::server:<secret>`: the
//! server keeps it in `<data-dir>/server/node-token` and accepts it (or its secret alone)
//! as a bearer token; an agent uses the hash to check the CA it fetches before trusting it.

use anyhow::Context;
use capstan_apiserver::TokenFile;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The user a join token authenticates as. Its groups let it do everything until RBAC
/// exists (then it needs only what a node does).
pub(crate) const AGENT_USER: &str = "capstan-agent";
const AGENT_GROUPS: &[&str] = &["system:nodes", "system:masters", "system:authenticated"];

/// A join token taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinToken {
    /// The lowercase hex SHA-256 of the CA PEM, when the token carries one.
    pub(crate) ca_hash: Option<String>,
    /// The password part (after `::server:`), or the whole text of a short token.
    pub(crate) secret: String,
}

impl JoinToken {
    /// Reads `K10<hash>::<user>:<secret>`, or takes any other text as a bare secret.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        let Some(rest) = text.strip_prefix("K10") else {
            anyhow::ensure!(!text.is_empty(), "the token is empty");
            return Ok(JoinToken { ca_hash: None, secret: text.to_owned() });
        };
        let (hash, credentials) =
            rest.split_once("::").context("the token has no `::` after the CA hash")?;
        anyhow::ensure!(
            hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "the token's CA hash is not a SHA-256 in hex"
        );
        let (_user, secret) =
            credentials.split_once(':').context("the token has no `<user>:<secret>` part")?;
        anyhow::ensure!(!secret.is_empty(), "the token's secret is empty");
        Ok(JoinToken { ca_hash: Some(hash.to_ascii_lowercase()), secret: secret.to_owned() })
    }
}

/// The lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn format_token(ca_pem: &str, secret: &str) -> String {
    format!("K10{}::server:{secret}", sha256_hex(ca_pem.as_bytes()))
}

/// The node token of the server under `data_dir`, created on first start: its secret is
/// kept across restarts, and its hash follows the current CA (rewritten if the CA changed).
/// The file is readable by its owner only.
pub(crate) fn ensure_node_token(data_dir: &Path, ca_pem: &str) -> anyhow::Result<String> {
    let path = data_dir.join("server/node-token");
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            Some(JoinToken::parse(&text).with_context(|| format!("{}", path.display()))?)
        }
        Ok(_) => None,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let secret = match &existing {
        Some(token) => token.secret.clone(),
        None => random_secret()?,
    };
    let token = format_token(ca_pem, &secret);
    let current = JoinToken { ca_hash: Some(sha256_hex(ca_pem.as_bytes())), secret };
    if existing.as_ref() != Some(&current) {
        write_private(&path, &format!("{token}\n"))?;
    }
    Ok(token)
}

/// Lets the token, and its secret alone, authenticate as [`AGENT_USER`].
pub(crate) fn authorize(tokens: &mut TokenFile, token: &str) -> anyhow::Result<()> {
    let parsed = JoinToken::parse(token)?;
    for accepted in [token, parsed.secret.as_str()] {
        tokens.insert(accepted, AGENT_USER, AGENT_USER, AGENT_GROUPS);
    }
    Ok(())
}

/// 32 hex characters from the system's secure random source.
fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tokens_parse() {
        let hash = "ab".repeat(32);
        assert_eq!(
            JoinToken::parse(&format!("K10{hash}::server:0123abcd\n")).unwrap(),
            JoinToken { ca_hash: Some(hash.clone()), secret: "0123abcd".into() }
        );
        assert_eq!(
            JoinToken::parse("just-a-secret").unwrap(),
            JoinToken { ca_hash: None, secret: "just-a-secret".into() }
        );
        for bad in
            ["", "K10abc::server:x", &format!("K10{hash}server:x"), &format!("K10{hash}::server:")]
        {
            assert!(JoinToken::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_token_is_created_once_and_follows_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_node_token(dir.path(), "CA one").unwrap();
        let path = dir.path().join("server/node-token");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let parsed = JoinToken::parse(&first).unwrap();
        assert_eq!(parsed.ca_hash.as_deref(), Some(sha256_hex(b"CA one").as_str()));
        assert_eq!(parsed.secret.len(), 32);
        assert_eq!(ensure_node_token(dir.path(), "CA one").unwrap(), first);
        let after_new_ca = ensure_node_token(dir.path(), "CA two").unwrap();
        assert_eq!(JoinToken::parse(&after_new_ca).unwrap().secret, parsed.secret);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), after_new_ca);
    }

    #[test]
    fn sha256_of_the_empty_string() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
