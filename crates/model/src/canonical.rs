use serde::Serialize;

/// Why a value could not be written as canonical JSON.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    /// serde_json refused the value.
    #[error("cannot serialise to JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A floating-point number appeared; the model keeps measured values as strings.
    #[error("non-integer number in canonical JSON at {0}")]
    Float(String),
}

/// Serialises `value` as canonical JSON in the style of RFC 8785 (JCS): object members sorted
/// by key, no insignificant white space, strings escaped minimally. Lab values are strings in
/// the model, so `5.60` stays `5.60`; any floating-point number is refused rather than
/// reformatted. The same value always gives the same bytes, so the hash of a report is stable.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    // Sorted explicitly: serde_json's Map keeps insertion order when any crate in the build
    // enables its `preserve_order` feature (dicom-json does), and report hashes must not
    // depend on feature unification. For the ASCII keys the model uses, byte order equals
    // JCS's UTF-16 code-unit order.
    let mut v = serde_json::to_value(value)?;
    v.sort_all_objects();
    check_numbers(&v, &mut String::from("$"))?;
    Ok(serde_json::to_vec(&v)?)
}

fn check_numbers(v: &serde_json::Value, path: &mut String) -> Result<(), CanonicalError> {
    match v {
        serde_json::Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
            Err(CanonicalError::Float(path.clone()))
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_numbers(x, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                check_numbers(x, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_keeps_value_strings() {
        let v = json!({"b": "5.60", "a": {"z": 1, "y": "血红蛋白"}});
        let out = String::from_utf8(canonical_json(&v).unwrap()).unwrap();
        assert_eq!(out, r#"{"a":{"y":"血红蛋白","z":1},"b":"5.60"}"#);
    }

    #[derive(Serialize)]
    struct OutOfOrder {
        zeta: &'static str,
        alpha: Inner,
    }
    #[derive(Serialize)]
    struct Inner {
        y: u8,
        b: u8,
    }

    #[test]
    fn struct_fields_come_out_sorted_whatever_serde_json_features_are_on() {
        let v = OutOfOrder {
            zeta: "z",
            alpha: Inner { y: 1, b: 2 },
        };
        let out = String::from_utf8(canonical_json(&v).unwrap()).unwrap();
        assert_eq!(out, r#"{"alpha":{"b":2,"y":1},"zeta":"z"}"#);
    }

    #[test]
    fn refuses_floats() {
        let v = json!({"x": [1, 2.5]});
        let e = canonical_json(&v).unwrap_err();
        assert!(e.to_string().contains("$.x[1]"), "{e}");
    }
}
