//! Who is asking: the principals, roles and bearer tokens of `huren-access`, and fresh tokens.

pub use huren_access::{token_hash, Principal, Role, TokenConfig, Tokens};

/// A fresh random token (32 bytes, hex).
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fresh_tokens_are_64_hex_digits() {
        let t = super::new_token().unwrap_or_default();
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
