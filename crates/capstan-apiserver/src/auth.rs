//! Authentication: who a request comes from. A client certificate signed by the cluster CA
//! (checked during the TLS handshake) or a bearer token from the static token file; anything
//! else is anonymous and gets 401. Every authenticated user may do everything until RBAC
//! exists.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) groups: Vec<String>,
}

/// Bearer tokens from a file in kube-apiserver's `--token-auth-file` format: one
/// `token,user,uid[,"group1,group2"]` line per token.
#[derive(Debug, Default, Clone)]
pub struct TokenFile {
    users: HashMap<String, User>,
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {problem}")]
    Line { path: PathBuf, line: usize, problem: &'static str },
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenFileError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|(line, problem)| TokenFileError::Line {
            path: path.to_owned(),
            line,
            problem,
        })
    }

    fn parse(text: &str) -> Result<Self, (usize, &'static str)> {
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            let [token, name, uid, rest @ ..] = fields.as_slice() else {
                return Err((index + 1, "expected token,user,uid[,\"groups\"]"));
            };
            if token.is_empty() || name.is_empty() {
                return Err((index + 1, "the token and the user name must not be empty"));
            }
            let groups = rest
                .first()
                .map(|g| g.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default();
            users.insert(token.clone(), User { name: name.clone(), uid: uid.clone(), groups });
        }
        Ok(TokenFile { users })
    }

    /// The user a bearer token belongs to.
    pub(crate) fn user(&self, token: &str) -> Option<&User> {
        self.users.get(token)
    }
}

/// Splits one CSV line, honouring double quotes (a quoted field may hold commas).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields.iter().map(|f| f.trim().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_lines() {
        let file = TokenFile::parse("# comment\nsecret,alice,1,\"dev,ops\"\nt2,bob,2\n").unwrap();
        let alice = file.user("secret").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, vec!["dev".to_owned(), "ops".to_owned()]);
        assert_eq!(file.user("t2").unwrap().groups, Vec::<String>::new());
        assert!(file.user("nope").is_none());
        assert_eq!(TokenFile::parse("only,two").unwrap_err().0, 1);
        assert_eq!(TokenFile::parse("\n,user,1").unwrap_err().0, 2);
    }
}
