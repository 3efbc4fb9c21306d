//! Service account tokens: JWTs (ES256) that `serviceaccounts/<name>/token` issues, bound to
//! audiences and an expiry, and that the server accepts back as bearer tokens for
//! `system:serviceaccount:<namespace>:<name>`.

use crate::ApiServerError;
use crate::auth::User;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

/// The issuer Capstan puts in its tokens and expects back, as kube-apiserver's default
/// `--service-account-issuer`.
pub(crate) const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Signs and verifies service account tokens with the cluster's key.
#[derive(Debug)]
pub(crate) struct TokenIssuer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

/// What a token says of whom it was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) namespace: String,
    pub(crate) service_account: String,
    pub(crate) service_account_uid: String,
    pub(crate) audiences: Vec<String>,
    /// Unix seconds.
    pub(crate) expires: i64,
    /// The pod or secret the token is bound to: (kind, name, uid).
    pub(crate) bound: Option<(String, String, String)>,
}

impl TokenIssuer {
    pub(crate) fn new(pem: &str) -> Result<Self, ApiServerError> {
        let invalid = |e: &dyn std::fmt::Display| {
            ApiServerError::Tls(format!("the service account key is unusable: {e}"))
        };
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| invalid(&e))?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_der(),
            &rng,
        )
        .map_err(|e| invalid(&e))?;
        Ok(TokenIssuer { key, rng })
    }

    /// A signed token for `grant`, issued at `now` (Unix seconds).
    pub(crate) fn issue(&self, grant: &Grant, now: i64) -> Option<String> {
        let mut private = json!({
            "namespace": grant.namespace,
            "serviceaccount": {"name": grant.service_account, "uid": grant.service_account_uid},
        });
        if let Some((kind, name, uid)) = &grant.bound {
            private[kind.to_lowercase()] = json!({"name": name, "uid": uid});
        }
        let claims = json!({
            "aud": grant.audiences,
            "exp": grant.expires,
            "iat": now,
            "nbf": now,
            "iss": ISSUER,
            "sub": format!("system:serviceaccount:{}:{}", grant.namespace, grant.service_account),
            "kubernetes.io": private,
        });
        let header = json!({"alg": "ES256", "kid": self.key_id(), "typ": "JWT"});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(&self.rng, signed.as_bytes()).ok()?;
        Some(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }

    /// The grant of a token this server signed that is still valid at `now`.
    pub(crate) fn verify(&self, token: &str, now: i64) -> Option<Grant> {
        let mut parts = token.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        );
        public.verify(format!("{header}.{claims}").as_bytes(), &signature).ok()?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        let expires = claims.get("exp")?.as_i64()?;
        let not_before = claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
        if claims.get("iss")?.as_str()? != ISSUER || now >= expires || now < not_before {
            return None;
        }
        let private = claims.get("kubernetes.io")?;
        let text =
            |pointer: &str| private.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
        let bound = ["pod", "secret"].iter().find_map(|kind| {
            let name = text(&format!("/{kind}/name"))?;
            let uid = text(&format!("/{kind}/uid")).unwrap_or_default();
            Some(((*kind).to_owned(), name, uid))
        });
        Some(Grant {
            namespace: text("/namespace")?,
            service_account: text("/serviceaccount/name")?,
            service_account_uid: text("/serviceaccount/uid").unwrap_or_default(),
            audiences: claims
                .get("aud")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
            expires,
            bound,
        })
    }

    /// A stable identifier of the signing key: a digest of its public half.
    fn key_id(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.key.public_key().as_ref());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }
}

impl Grant {
    /// The user a token authenticates as.
    pub(crate) fn user(&self) -> User {
        User {
            name: format!("system:serviceaccount:{}:{}", self.namespace, self.service_account),
            uid: self.service_account_uid.clone(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", self.namespace),
                "system:authenticated".into(),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        let key = rcgen::KeyPair::generate().unwrap();
        TokenIssuer::new(&key.serialize_pem()).unwrap()
    }

    fn grant(expires: i64) -> Grant {
        Grant {
            namespace: "default".into(),
            service_account: "builder".into(),
            service_account_uid: "u-1".into(),
            audiences: vec!["https://kubernetes.default.svc.cluster.local".into()],
            expires,
            bound: Some(("pod".into(), "web".into(), "p-1".into())),
        }
    }

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let issuer = issuer();
        let token = issuer.issue(&grant(2000), 1000).unwrap();
        assert_eq!(issuer.verify(&token, 1500), Some(grant(2000)));
        assert_eq!(issuer.verify(&token, 2000), None);
        assert_eq!(
            issuer.verify(&token, 1500).unwrap().user().name,
            "system:serviceaccount:default:builder"
        );
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let (ours, theirs) = (issuer(), issuer());
        let token = theirs.issue(&grant(2000), 1000).unwrap();
        assert_eq!(ours.verify(&token, 1500), None);
        let mine = ours.issue(&grant(2000), 1000).unwrap();
        let mut parts: Vec<&str> = mine.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(r#"{"exp":9999,"iss":"x"}"#);
        parts[1] = &forged_claims;
        assert_eq!(ours.verify(&parts.join("."), 1500), None);
        for junk in ["", "a.b", "a.b.c.d", "...", "not a token"] {
            assert_eq!(ours.verify(junk, 0), None, "{junk}");
        }
    }
}
