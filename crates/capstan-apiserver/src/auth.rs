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

impl User {
    /// The user a client certificate names: the subject's common name, and its
    /// organizations as groups (as kube-apiserver reads them). `None` when the certificate
    /// cannot be read or names no one.
    pub(crate) fn from_certificate(der: &[u8]) -> Option<User> {
        let (name, groups) = subject_names(der)?;
        let name = name?;
        let mut groups = groups;
        groups.push("system:authenticated".into());
        Some(User { name, uid: String::new(), groups })
    }
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

    /// Adds a token for `user` (with `uid` and `groups`) besides those of the file, as the
    /// node join token of `capstan server`; a token already known is re-pointed.
    pub fn insert(&mut self, token: &str, user: &str, uid: &str, groups: &[&str]) {
        let groups = groups.iter().map(|group| (*group).to_owned()).collect();
        self.users
            .insert(token.to_owned(), User { name: user.to_owned(), uid: uid.to_owned(), groups });
    }

    /// The user a bearer token belongs to.
    pub(crate) fn user(&self, token: &str) -> Option<&User> {
        self.users.get(token)
    }
}

/// The subject's common name and organizations of a DER certificate.
fn subject_names(der: &[u8]) -> Option<(Option<String>, Vec<String>)> {
    const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
    let (certificate, _) = der::element(der, der::SEQUENCE)?;
    let (mut tbs, _) = der::element(certificate, der::SEQUENCE)?;
    // version [0] (optional), serialNumber, signature, issuer, validity, then subject.
    if tbs.first() == Some(&0xa0) {
        tbs = der::skip(tbs)?;
    }
    for _ in 0..4 {
        tbs = der::skip(tbs)?;
    }
    let (mut subject, _) = der::element(tbs, der::SEQUENCE)?;
    let (mut name, mut groups) = (None, Vec::new());
    while !subject.is_empty() {
        let (set, rest) = der::element(subject, der::SET)?;
        subject = rest;
        let (attribute, _) = der::element(set, der::SEQUENCE)?;
        let (oid, value) = der::element(attribute, der::OID)?;
        let text = der::string(value)?;
        match oid {
            COMMON_NAME => name = Some(text),
            ORGANIZATION => groups.push(text),
            _ => {}
        }
    }
    Some((name, groups))
}

/// Just enough DER to read a certificate's subject.
mod der {
    pub(super) const SEQUENCE: u8 = 0x30;
    pub(super) const SET: u8 = 0x31;
    pub(super) const OID: u8 = 0x06;

    /// The contents of the element at the start of `input` (which must have `tag`), and
    /// what follows it.
    pub(super) fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        if *input.first()? != tag {
            return None;
        }
        split(input)
    }

    /// What follows the element at the start of `input`, whatever its tag.
    pub(super) fn skip(input: &[u8]) -> Option<&[u8]> {
        split(input).map(|(_, rest)| rest)
    }

    fn split(input: &[u8]) -> Option<(&[u8], &[u8])> {
        let first = *input.get(1)?;
        let (length, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return None;
            }
            let bytes = input.get(2..2 + count)?;
            (bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b)), 2 + count)
        };
        let end = header.checked_add(length)?;
        Some((input.get(header..end)?, input.get(end..)?))
    }

    /// A UTF8String, PrintableString or IA5String's text.
    pub(super) fn string(input: &[u8]) -> Option<String> {
        match input.first()? {
            0x0c | 0x13 | 0x16 => {
                let (text, _) = split(input)?;
                String::from_utf8(text.to_vec()).ok()
            }
            _ => None,
        }
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
    fn reads_the_subject_of_a_client_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "jane");
        // (rcgen keeps one value per attribute type: one organization.)
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:masters");
        let cert = params.self_signed(&key).unwrap();
        let user = User::from_certificate(cert.der()).unwrap();
        assert_eq!(user.name, "jane");
        assert_eq!(user.groups, ["system:masters", "system:authenticated"]);
        assert!(User::from_certificate(b"garbage").is_none());
        assert!(User::from_certificate(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    }

    #[test]
    fn parses_token_lines() {
        let file = TokenFile::parse("# comment\nsecret,alice,1,\"dev,ops\"\nt2,bob,2\n").unwrap();
        let alice = file.user("secret").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, vec!["dev".to_owned(), "ops".to_owned()]);
        assert_eq!(file.user("t2").unwrap().groups, Vec::<String>::new());
        assert!(file.user("nope").is_none());
        assert_eq!(TokenFile::parse("only,two").unwrap_err().0, 1);
        let mut file = TokenFile::default();
        file.insert("s3cret", "capstan-agent", "", &["system:nodes"]);
        assert_eq!(file.user("s3cret").unwrap().groups, ["system:nodes"]);
        assert_eq!(file.user("other"), None);
        assert_eq!(TokenFile::parse("\n,user,1").unwrap_err().0, 2);
    }
}
