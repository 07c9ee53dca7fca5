//! The secret behind pseudonyms and date shifts: HMAC-SHA256 under a 256-bit key.

use std::path::Path;

use ring::hmac;

use crate::Error;

/// Days a patient's dates may move, either way (never zero: a zero shift would leave real
/// dates in a date-shifted extract).
pub const MAX_SHIFT_DAYS: i64 = 365;

/// A de-identification key.
#[derive(Clone)]
pub struct Key {
    hmac: hmac::Key,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn from_bytes(bytes: &[u8]) -> Key {
        Key { hmac: hmac::Key::new(hmac::HMAC_SHA256, bytes) }
    }

    /// A key for one extract, forgotten with it.
    pub fn random() -> Result<Key, Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        Ok(Key::from_bytes(&bytes))
    }

    /// The record's key at `path` (64 hex digits), made on first use, readable by its owner
    /// only: the same patient gets the same shift and the same pseudonym in every extract.
    pub fn load_or_create(path: &Path) -> Result<Key, Error> {
        let fail = |reason: String| Error::Key { path: path.display().to_string(), reason };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let text = text.trim();
                let bytes = decode_hex(text).ok_or_else(|| fail("is not 64 hexadecimal digits".into()))?;
                Ok(Key::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                // Written whole beside it, then linked into place: a crash leaves no half
                // key, and of two first extracts at once the second reads the first's key.
                let staged = path.with_extension(format!("new-{}", std::process::id()));
                write_private(&staged, &hex).map_err(|e| fail(e.to_string()))?;
                let linked = std::fs::hard_link(&staged, path);
                let _ = std::fs::remove_file(&staged);
                match linked {
                    Ok(()) => Ok(Key::from_bytes(&bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Key::load_or_create(path),
                    Err(e) => Err(fail(e.to_string())),
                }
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }

    fn tag(&self, purpose: &str, value: &str) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.hmac);
        context.update(purpose.as_bytes());
        context.update(&[0]);
        context.update(value.as_bytes());
        context.sign()
    }

    /// A pseudonym for `Type/id`: 20 lowercase base-32 characters (100 bits), a valid FHIR id.
    pub fn pseudonym(&self, resource_type: &str, id: &str) -> String {
        let tag = self.tag("id", &format!("{resource_type}/{id}"));
        base32(&tag.as_ref()[..13])[..20].to_string()
    }

    /// The patient's date shift in days, in ±[1, MAX_SHIFT_DAYS].
    pub fn shift_days(&self, patient: &str) -> i64 {
        let tag = self.tag("shift", patient);
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag.as_ref()[..8]);
        let n = u64::from_be_bytes(first);
        let magnitude = (n % MAX_SHIFT_DAYS as u64) as i64 + 1;
        if n >> 63 == 1 { -magnitude } else { magnitude }
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..32).map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_are_stable_nonzero_and_bounded() {
        let key = Key::from_bytes(b"a test key of some length");
        for i in 0..2000 {
            let patient = format!("p{i}");
            let shift = key.shift_days(&patient);
            assert!(shift != 0 && shift.abs() <= MAX_SHIFT_DAYS);
            assert_eq!(shift, key.shift_days(&patient));
        }
        assert_ne!(key.pseudonym("Patient", "1"), key.pseudonym("Patient", "2"));
        assert_ne!(key.pseudonym("Patient", "1"), key.pseudonym("Encounter", "1"));
        assert_eq!(key.pseudonym("Patient", "1").len(), 20);
        let other = Key::from_bytes(b"another key");
        assert_ne!(key.pseudonym("Patient", "1"), other.pseudonym("Patient", "1"));
    }

    #[test]
    fn the_record_key_is_made_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("deid-key-{}", std::process::id()));
        let path = dir.join("deid.key");
        let _ = std::fs::remove_file(&path);
        let first = Key::load_or_create(&path).unwrap();
        let second = Key::load_or_create(&path).unwrap();
        assert_eq!(first.pseudonym("Patient", "x"), second.pseudonym("Patient", "x"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
