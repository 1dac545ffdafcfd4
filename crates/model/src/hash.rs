use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An algorithm-tagged content hash, written `blake3:<64 hex digits>`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

/// Why a string is not a [`ContentHash`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashParseError {
    /// The `blake3:` prefix is missing (no other algorithm is supported).
    #[error("content hash must start with `blake3:`")]
    Algorithm,
    /// The digest is not 64 lowercase hex digits.
    #[error("content hash digest must be 64 lowercase hex digits")]
    Digest,
}

impl ContentHash {
    /// Hashes `bytes` with BLAKE3.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// The raw 32-byte digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a hash from a raw digest.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        ContentHash(b)
    }

    /// The 64-digit lowercase hex digest without the algorithm tag.
    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

/// A [`ContentHash`] computed over bytes that arrive in pieces (a data set streamed to a
/// file): the same hash as [`ContentHash::of`] over their concatenation.
#[derive(Clone, Default)]
pub struct ContentHasher(blake3::Hasher);

impl ContentHasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Self {
        ContentHasher::default()
    }

    /// Adds the next piece.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hash of every piece so far.
    pub fn finish(&self) -> ContentHash {
        ContentHash(*self.0.finalize().as_bytes())
    }
}

/// Bytes with their [`ContentHash`], computed once when the pair is made. The fields are
/// private, so the hash always belongs to the bytes: whoever receives a `Hashed` may use the
/// hash without hashing again.
#[derive(Clone, PartialEq, Eq)]
pub struct Hashed {
    hash: ContentHash,
    bytes: Vec<u8>,
}

impl Hashed {
    /// Hashes `bytes` and keeps them with their hash.
    pub fn new(bytes: Vec<u8>) -> Self {
        Hashed {
            hash: ContentHash::of(&bytes),
            bytes,
        }
    }

    /// The hash of the bytes.
    pub fn hash(&self) -> ContentHash {
        self.hash
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, giving up the pair.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl Default for Hashed {
    /// No bytes, with the hash of no bytes.
    fn default() -> Self {
        Hashed::new(Vec::new())
    }
}

impl From<Vec<u8>> for Hashed {
    fn from(bytes: Vec<u8>) -> Self {
        Hashed::new(bytes)
    }
}

impl From<&[u8]> for Hashed {
    fn from(bytes: &[u8]) -> Self {
        Hashed::new(bytes.to_vec())
    }
}

impl fmt::Debug for Hashed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hashed({}, {} bytes)", self.hash, self.bytes.len())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", self.hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for ContentHash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("blake3:").ok_or(HashParseError::Algorithm)?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(HashParseError::Digest);
        }
        let h = blake3::Hash::from_hex(hex).map_err(|_| HashParseError::Digest)?;
        Ok(ContentHash(*h.as_bytes()))
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_text() {
        let h = ContentHash::of(b"abc");
        let pair = Hashed::from(&b"abc"[..]);
        assert_eq!(pair.hash(), h);
        assert_eq!(pair.bytes(), b"abc");
        let s = h.to_string();
        assert!(s.starts_with("blake3:6437b3ac"));
        assert_eq!(s.parse::<ContentHash>(), Ok(h));
        assert_eq!(
            "sha256:00".parse::<ContentHash>(),
            Err(HashParseError::Algorithm)
        );
        assert_eq!(
            "blake3:XYZ".parse::<ContentHash>(),
            Err(HashParseError::Digest)
        );
        let upper = s.to_uppercase().replace("BLAKE3", "blake3");
        assert_eq!(upper.parse::<ContentHash>(), Err(HashParseError::Digest));
    }
}
