//! C-FIND identifiers: the request data set → (tag, value) keys, and answers → data sets in
//! the presentation context's transfer syntax, in UTF-8 (`ISO_IR 192`).

use dicom_core::header::Header;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::mem::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::DicomError;

/// Reads a C-FIND request identifier: every top-level element as (tag, value text);
/// sequences and binary values give an empty value (return keys).
pub fn read_identifier(b: &[u8], ts_uid: &str) -> Result<Vec<(Tag, String)>, DicomError> {
    let ts_uid = ts_uid.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if b.is_empty()
        && TransferSyntaxRegistry
            .get(ts_uid)
            .is_some_and(|t| !t.is_unsupported())
    {
        return Err(DicomError::Parse("empty identifier".into()));
    }
    let obj = crate::read_data(b, ts_uid)?;
    Ok(obj
        .iter()
        .map(|e| {
            let v = match e.value() {
                Value::Primitive(p) => match e.vr() {
                    VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::UN => String::new(),
                    _ => p.to_str().into_owned(),
                },
                _ => String::new(),
            };
            (e.tag(), v)
        })
        .collect())
}

/// Writes an answer identifier: `(tag, VR, value)` (`None` = zero length; `\` separates
/// values), with Specific Character Set `ISO_IR 192` first.
pub fn write_identifier(
    attrs: &[(Tag, VR, Option<String>)],
    ts_uid: &str,
) -> Result<Vec<u8>, DicomError> {
    let ts_uid = ts_uid.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .filter(|t| !t.is_unsupported())
        .ok_or_else(|| DicomError::UnsupportedTransferSyntax(ts_uid.to_string()))?;
    let mut o = InMemDicomObject::new_empty();
    o.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::from("ISO_IR 192"),
    ));
    for (tag, vr, value) in attrs {
        if *tag == tags::SPECIFIC_CHARACTER_SET {
            continue;
        }
        let v = match value.as_deref() {
            None | Some("") => PrimitiveValue::Empty,
            Some(s) if *vr == VR::US => match s.parse::<u16>() {
                Ok(n) => PrimitiveValue::from(n),
                Err(_) => PrimitiveValue::Empty,
            },
            Some(s) => PrimitiveValue::from(s),
        };
        o.put(DataElement::new(*tag, *vr, v));
    }
    let mut out = Vec::new();
    o.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| DicomError::Parse(crate::error_chain(&e)))?;
    Ok(out)
}
