//! Tenant secrets at rest and in what attempts leave behind: the server's secret key (from
//! `JOBHOST_SECRET_KEY` or a 0600 key file), sealing each value with XChaCha20-Poly1305 bound
//! to its tenant and name, and redacting values from captured output before it is stored.
//! The store only ever holds sealed bytes; values leave this module only for a running handler.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// The environment variable that carries the key (64 hex digits), instead of the key file.
pub const KEY_ENV: &str = "JOBHOST_SECRET_KEY";
/// The key file in the data directory, created on first start.
pub const KEY_FILE: &str = "secret.key";
/// Longest secret value.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;
/// Values shorter than this are not redacted: they would blank out ordinary words and digits.
const MIN_REDACTED_BYTES: usize = 4;

const NONCE_BYTES: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error("{KEY_ENV} must be 64 hex digits (32 bytes), e.g. from `openssl rand -hex 32`")]
    BadEnv,
    #[error("the secret key file {0} must hold 64 hex digits; it may be damaged")]
    BadFile(String),
    #[error("cannot read or create the secret key file {path}: {error}")]
    Io { path: String, error: String },
}

/// Seals and opens secret values under the server's key.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn new(key: [u8; 32]) -> SecretBox {
        SecretBox {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// The key from `JOBHOST_SECRET_KEY`, else from `secret.key` in `data_dir`, created with
    /// mode 0600 and a random key when absent.
    pub fn from_env_or_dir(data_dir: &Path) -> Result<SecretBox, SecretKeyError> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            return parse_key(&text)
                .map(SecretBox::new)
                .ok_or(SecretKeyError::BadEnv);
        }
        let path = data_dir.join(KEY_FILE);
        let io = |error: std::io::Error| SecretKeyError::Io {
            path: path.display().to_string(),
            error: error.to_string(),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_key(&text)
                .map(SecretBox::new)
                .ok_or_else(|| SecretKeyError::BadFile(path.display().to_string())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                write_private(&path, format!("{}\n", hex::encode(key)).as_bytes()).map_err(io)?;
                Ok(SecretBox::new(key))
            }
            Err(error) => Err(io(error)),
        }
    }

    /// Seals a value for one tenant and name: it opens only under the same pair.
    pub fn seal(&self, tenant: &str, name: &str, value: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let aad = binding(tenant, name);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: &aad,
                },
            )
            .expect("sealing into memory does not fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a sealed value; `None` when it was sealed under another key, tenant or name, or
    /// was altered.
    pub fn open(&self, tenant: &str, name: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        let aad = binding(tenant, name);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .ok()
    }
}

fn binding(tenant: &str, name: &str) -> Vec<u8> {
    format!("jobhost-secret\0{tenant}\0{name}").into_bytes()
}

fn parse_key(text: &str) -> Option<[u8; 32]> {
    hex::decode(text.trim()).ok()?.try_into().ok()
}

/// Creates a file readable by its owner only, refusing to replace one.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Replaces every occurrence of each secret value in `text` with `[redacted:NAME]`.
pub fn redact(text: &str, secrets: &[(String, String)]) -> String {
    let mut text = text.to_string();
    // Longest first, so a value that contains another is replaced whole.
    let mut ordered: Vec<&(String, String)> = secrets
        .iter()
        .filter(|(_, value)| value.len() >= MIN_REDACTED_BYTES)
        .collect();
    ordered.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
    for (name, value) in ordered {
        if text.contains(value.as_str()) {
            text = text.replace(value.as_str(), &format!("[redacted:{name}]"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> SecretBox {
        SecretBox::new([7; 32])
    }

    #[test]
    fn a_sealed_value_opens_under_its_tenant_and_name() {
        let sealed = sealer().seal("acme", "TOKEN", b"s3cr3t");
        assert_eq!(
            sealer().open("acme", "TOKEN", &sealed),
            Some(b"s3cr3t".to_vec())
        );
    }

    #[test]
    fn a_sealed_value_does_not_show_its_plaintext() {
        let sealed = sealer().seal("acme", "TOKEN", b"plain-text-value");
        assert!(!sealed.windows(16).any(|w| w == b"plain-text-value"));
    }

    #[test]
    fn a_value_moved_to_another_tenant_or_name_does_not_open() {
        let sealed = sealer().seal("acme", "TOKEN", b"s3cr3t");
        assert_eq!(sealer().open("other", "TOKEN", &sealed), None);
        assert_eq!(sealer().open("acme", "OTHER", &sealed), None);
        assert_eq!(SecretBox::new([8; 32]).open("acme", "TOKEN", &sealed), None);
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SecretBox::from_env_or_dir(dir.path()).unwrap();
        let sealed = first.seal("t", "n", b"value");
        let again = SecretBox::from_env_or_dir(dir.path()).unwrap();
        assert_eq!(again.open("t", "n", &sealed), Some(b"value".to_vec()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn redaction_replaces_every_occurrence_longest_value_first() {
        let secrets = vec![
            ("SHORT".to_string(), "abcd".to_string()),
            ("LONG".to_string(), "abcdefgh".to_string()),
            ("TINY".to_string(), "ab".to_string()),
        ];
        assert_eq!(
            redact("key=abcdefgh and abcd, ab", &secrets),
            "key=[redacted:LONG] and [redacted:SHORT], ab"
        );
    }
}
