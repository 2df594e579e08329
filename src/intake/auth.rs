//! Who may call the API: HTTP Basic with the webhook credentials, or a Bearer token
//! when `[api] token` is set.
//!
//! Both sides are hashed with SHA-256 before a constant-time comparison, so neither the
//! content nor the length of the secret leaks through response timing.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The expected credentials, kept only as digests.
#[derive(Clone)]
pub struct Credentials {
    /// SHA-256 of `user:password`; `None` when no password is set (loopback only).
    basic: Option<[u8; 32]>,
    bearer: Option<[u8; 32]>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("basic", &self.basic.is_some())
            .field("bearer", &self.bearer.is_some())
            .finish()
    }
}

impl Credentials {
    pub fn from_config(c: &Config) -> Self {
        let basic = (!c.webhook.password.is_empty()).then(|| {
            digest(format!("{}:{}", c.webhook.username, c.webhook.password.expose()).as_bytes())
        });
        let bearer = (!c.api.token.is_empty()).then(|| digest(c.api.token.expose().as_bytes()));
        Self { basic, bearer }
    }

    /// No credentials configured: configuration validation only allows that on a
    /// loopback listener, where the API stays open for a single-box setup.
    pub fn is_open(&self) -> bool {
        self.basic.is_none() && self.bearer.is_none()
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&[u8]>) -> bool {
        if self.is_open() {
            return true;
        }
        let Some(header) = authorization else {
            return false;
        };
        let Ok(header) = std::str::from_utf8(header) else {
            return false;
        };
        let (scheme, value) = header.trim().split_once(' ').unwrap_or((header, ""));
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let Some(expected) = &self.basic else {
                return false;
            };
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value) else {
                return false;
            };
            bool::from(digest(&decoded).ct_eq(expected))
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let Some(expected) = &self.bearer else {
                return false;
            };
            bool::from(digest(value.as_bytes()).ct_eq(expected))
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn basic(user: &str, pw: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
        .into_bytes()
    }

    #[test]
    fn basic_and_bearer() {
        let mut c = Config::default();
        c.webhook.password = Secret::new("pw");
        c.api.token = Secret::new("tok");
        let creds = Credentials::from_config(&c);
        let cases: &[(Option<&[u8]>, bool)] = &[
            (Some(&basic("alertmanager", "pw")), true),
            (Some(&basic("alertmanager", "pw2")), false),
            (Some(&basic("other", "pw")), false),
            (Some(&basic("alertmanager", "")), false),
            (Some(b"Bearer tok"), true),
            (Some(b"bearer tok"), true),
            (Some(b"Bearer tok2"), false),
            (Some(b"Basic !!notbase64"), false),
            (Some(b"Digest x"), false),
            (Some(b""), false),
            (None, false),
        ];
        for (header, ok) in cases {
            assert_eq!(
                creds.check(*header),
                *ok,
                "{:?}",
                header.map(String::from_utf8_lossy)
            );
        }
    }

    #[test]
    fn bearer_is_refused_when_no_token_is_configured() {
        let mut c = Config::default();
        c.webhook.password = Secret::new("pw");
        let creds = Credentials::from_config(&c);
        assert!(!creds.check(Some(b"Bearer ")));
        assert!(!creds.is_open());
        assert!(Credentials::from_config(&Config::default()).is_open());
    }
}
