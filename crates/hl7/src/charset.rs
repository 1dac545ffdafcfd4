/// Character sets huren decodes (MSH-18 or per-sender configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    /// UTF-8 (`UNICODE UTF-8`).
    Utf8,
    /// GB 18030 (also used for GBK and GB2312, which it contains).
    Gb18030,
    /// 7-bit ASCII (the HL7 default when MSH-18 is empty).
    Ascii,
    /// ISO 8859-1 (`8859/1`), decoded as windows-1252 per the WHATWG encoding standard.
    Latin1,
}

impl Charset {
    /// Reads an MSH-18 value or a configuration label, case-insensitively.
    pub fn from_label(s: &str) -> Option<Charset> {
        let n: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
            .flat_map(char::to_uppercase)
            .collect();
        match n.as_str() {
            "UNICODEUTF8" | "UTF8" | "UNICODE" => Some(Charset::Utf8),
            "GB18030" | "GB180302000" | "GB180302005" | "GBK" | "GB2312" | "GB231280" | "CP936" => {
                Some(Charset::Gb18030)
            }
            "ASCII" | "USASCII" => Some(Charset::Ascii),
            "8859/1" | "ISO88591" | "LATIN1" => Some(Charset::Latin1),
            _ => None,
        }
    }

    /// The MSH-18 value huren writes for this charset.
    pub fn hl7_label(&self) -> &'static str {
        match self {
            Charset::Utf8 => "UNICODE UTF-8",
            Charset::Gb18030 => "GB 18030-2000",
            Charset::Ascii => "ASCII",
            Charset::Latin1 => "8859/1",
        }
    }

    /// Decodes strictly: `Err(byte offset)` of the first byte that is not valid.
    pub fn decode(&self, bytes: &[u8]) -> Result<String, usize> {
        match self {
            Charset::Utf8 => match std::str::from_utf8(bytes) {
                Ok(s) => Ok(s.to_string()),
                Err(e) => Err(e.valid_up_to()),
            },
            Charset::Ascii => match bytes.iter().position(|b| *b >= 0x80) {
                Some(p) => Err(p),
                None => Ok(String::from_utf8_lossy(bytes).into_owned()),
            },
            Charset::Gb18030 => {
                let mut dec = encoding_rs::GB18030.new_decoder_without_bom_handling();
                let mut out = String::with_capacity(bytes.len() * 3 / 2 + 16);
                let (res, read) = dec.decode_to_string_without_replacement(bytes, &mut out, true);
                match res {
                    encoding_rs::DecoderResult::InputEmpty => Ok(out),
                    encoding_rs::DecoderResult::Malformed(bad, _) => {
                        Err(read.saturating_sub(bad as usize))
                    }
                    encoding_rs::DecoderResult::OutputFull => {
                        // Capacity was too small: fall back to the allocating API.
                        let (cow, had_errors) =
                            encoding_rs::GB18030.decode_without_bom_handling(bytes);
                        if had_errors {
                            Err(0)
                        } else {
                            Ok(cow.into_owned())
                        }
                    }
                }
            }
            Charset::Latin1 => Ok(encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(bytes)
                .0
                .into_owned()),
        }
    }

    /// Encodes text for an outgoing message (unmappable characters become `?`).
    pub fn encode(&self, s: &str) -> Vec<u8> {
        match self {
            Charset::Utf8 => s.as_bytes().to_vec(),
            Charset::Ascii => s
                .chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                .collect(),
            Charset::Gb18030 => encoding_rs::GB18030.encode(s).0.into_owned(),
            Charset::Latin1 => s
                .chars()
                .map(|c| {
                    if (c as u32) < 256 {
                        c as u32 as u8
                    } else {
                        b'?'
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_strict_decoding() {
        assert_eq!(Charset::from_label("UNICODE UTF-8"), Some(Charset::Utf8));
        assert_eq!(Charset::from_label("gb 18030-2000"), Some(Charset::Gb18030));
        assert_eq!(Charset::from_label("GBK"), Some(Charset::Gb18030));
        assert_eq!(Charset::from_label("8859/1"), Some(Charset::Latin1));
        assert_eq!(Charset::from_label("EBCDIC"), None);
        let gb = encoding_rs::GB18030.encode("血常规").0.into_owned();
        assert_eq!(Charset::Gb18030.decode(&gb).unwrap(), "血常规");
        assert!(
            Charset::Utf8.decode(&gb).is_err(),
            "GB18030 bytes are not UTF-8"
        );
        assert_eq!(Charset::Ascii.decode(b"ab\xe8"), Err(2));
        assert!(
            Charset::Gb18030.decode(b"ab\x81").is_err(),
            "truncated GB18030 sequence"
        );
    }
}
