//! Bearer tokens and webhook signatures, checked in constant time.
//!
//! API tokens are kept only as SHA-256 hashes (in the configuration file, and in memory: a
//! token from `KILN_API_TOKENS` is hashed when it is read). Tokens are long random strings, so a
//! plain SHA-256 is the right tool (a password hash would only slow every request down). A
//! presented token is hashed and compared with every known hash using `subtle`'s constant-time
//! equality, without stopping at the first match, so the time taken does not depend on which
//! token, or how much of one, was right.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of a token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// `sha256:<64 hex digits>`.
    pub fn parse(text: &str) -> Result<TokenHash, String> {
        let hex_part = text
            .strip_prefix("sha256:")
            .ok_or_else(|| "does not start with `sha256:`".to_owned())?;
        let bytes = hex::decode(hex_part).map_err(|_| "is not hex".to_owned())?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "is not 32 bytes (64 hex digits)".to_owned())?;
        Ok(TokenHash(arr))
    }

    pub fn display(&self) -> String {
        format!("sha256:{}", hex::encode(self.0))
    }
}

/// The API tokens the server accepts: a name (for logs) and a hash each.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, TokenHash)>,
}

impl Tokens {
    pub fn add(&mut self, name: String, hash: TokenHash) {
        self.entries.push((name, hash));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The name of the token `presented` is, if any. Every hash is compared.
    pub fn check(&self, presented: &str) -> Option<&str> {
        let hash = TokenHash::of(presented);
        let mut found: Option<&str> = None;
        for (name, known) in &self.entries {
            let equal: bool = known.0.ct_eq(&hash.0).into();
            if equal && found.is_none() {
                found = Some(name);
            }
        }
        found
    }
}

/// A new random token (256 bits, URL-safe): `kiln_` and 64 hex digits.
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom(&mut bytes)?;
    Ok(format!("kiln_{}", hex::encode(bytes)))
}

fn getrandom(buf: &mut [u8]) -> Result<(), String> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| format!("cannot read random bytes from /dev/urandom: {e}"))
}

/// Checks GitHub's `X-Hub-Signature-256: sha256=<hex>` (HMAC-SHA256 of the raw body) in
/// constant time.
pub fn github_signature_ok(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected).is_ok()
}

/// Checks GitLab's `X-Gitlab-Token` (a shared secret sent as is) in constant time: both sides
/// are hashed first, so the comparison's length and time do not depend on the secret.
pub fn gitlab_token_ok(secret: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header else {
        return false;
    };
    let a = Sha256::digest(secret);
    let b = Sha256::digest(given.as_bytes());
    a.ct_eq(&b).into()
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body): the signature Kiln puts on its notifications
/// (`X-Kiln-Signature-256`), in GitHub's format so the same verifiers work.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_known_by_its_hash_only() {
        let mut tokens = Tokens::default();
        tokens.add("ci".into(), TokenHash::of("kiln_secret_token_1"));
        tokens.add(
            "ops".into(),
            TokenHash::parse(&TokenHash::of("kiln_secret_token_2").display()).expect("parse"),
        );
        assert_eq!(tokens.check("kiln_secret_token_1"), Some("ci"));
        assert_eq!(tokens.check("kiln_secret_token_2"), Some("ops"));
        assert_eq!(tokens.check("kiln_secret_token_3"), None);
        assert_eq!(tokens.check(""), None);
        assert!(!format!("{tokens:?}").contains("kiln_secret"));
    }

    #[test]
    fn a_bad_hash_in_the_configuration_is_explained() {
        assert!(TokenHash::parse("abc").is_err());
        assert!(TokenHash::parse("sha256:zz").is_err());
        assert!(TokenHash::parse("sha256:abcd").is_err());
    }

    #[test]
    fn github_signatures_match_the_documented_example() {
        // The example of GitHub's "Validating webhook deliveries" documentation.
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(github_signature_ok(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some(sig)
        ));
        assert!(!github_signature_ok(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            Some(sig)
        ));
        assert!(!github_signature_ok(
            b"another secret",
            b"Hello, World!",
            Some(sig)
        ));
        assert!(!github_signature_ok(b"s", b"x", None));
        assert!(!github_signature_ok(b"s", b"x", Some("sha1=abc")));
        assert_eq!(sign(b"It's a Secret to Everybody", b"Hello, World!"), sig);
    }

    #[test]
    fn gitlab_tokens_are_compared_whole() {
        assert!(gitlab_token_ok(b"tok", Some("tok")));
        assert!(!gitlab_token_ok(b"tok", Some("to")));
        assert!(!gitlab_token_ok(b"tok", Some("tok2")));
        assert!(!gitlab_token_ok(b"tok", None));
    }
}
