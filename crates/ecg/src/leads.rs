//! Canonical lead names, ordering, and limb-lead derivation.

use huren_model::ecg::WaveLead;

/// Canonical order; anything else sorts after, in the order it came.
const ORDER: [&str; 22] = [
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6", "V7", "V8", "V9",
    "V1R", "V2R", "V3R", "V4R", "V5R", "V6R", "V7R",
];

/// SCP-ECG / MDC (partition 2) lead numbers.
fn by_number(n: u32) -> Option<&'static str> {
    Some(match n {
        1 => "I",
        2 => "II",
        3 => "V1",
        4 => "V2",
        5 => "V3",
        6 => "V4",
        7 => "V5",
        8 => "V6",
        9 => "V7",
        10 => "V2R",
        11 => "V3R",
        12 => "V4R",
        13 => "V5R",
        14 => "V6R",
        15 => "V7R",
        61 => "III",
        62 => "aVR",
        63 => "aVL",
        64 => "aVF",
        66 => "V8",
        67 => "V9",
        68 => "V8R",
        69 => "V9R",
        _ => return None,
    })
}

/// Maps any spelling of a lead to its canonical name: `MDC_ECG_LEAD_AVR`, `Lead I
/// (Einthoven)`, `aVR, augmented voltage, right`, SCP-ECG code `5.6.3-9-62`, MDC code `2:62`,
/// `v4r`. Unknown labels give `None`.
pub fn canonical_lead(label: &str) -> Option<&'static str> {
    let s = label.trim();
    if let Some(n) = s.strip_prefix("5.6.3-9-") {
        return n.parse().ok().and_then(by_number);
    }
    if let Some(n) = s.strip_prefix("2:") {
        return n.parse().ok().and_then(by_number);
    }
    let s = s.strip_prefix("MDC_ECG_LEAD_").unwrap_or(s);
    let s = s.split(',').next().unwrap_or(s);
    let s = s.split('(').next().unwrap_or(s).trim();
    let s = s
        .strip_prefix("Lead ")
        .or_else(|| s.strip_prefix("lead "))
        .or_else(|| s.strip_prefix("LEAD "))
        .unwrap_or(s)
        .trim();
    let up = s.to_ascii_uppercase();
    ORDER
        .iter()
        .chain(["V8R", "V9R"].iter())
        .find(|c| c.to_ascii_uppercase() == up)
        .copied()
}

/// Sort key of a canonical name (unknown names last).
pub(crate) fn rank(name: &str) -> usize {
    ORDER.iter().position(|c| *c == name).unwrap_or(ORDER.len())
}

/// Sorts leads into canonical order (stable for unknown names).
pub(crate) fn sort(leads: &mut [WaveLead]) {
    leads.sort_by_key(|l| rank(&l.name));
}

/// Adds III, aVR, aVL, aVF computed from I and II when they are missing, exactly: the
/// augmented leads are stored doubled at half the scale (aVR = −(I+II)/2 …), so no rounding.
/// Returns the names added.
pub(crate) fn derive_limb_leads(leads: &mut Vec<WaveLead>) -> Vec<&'static str> {
    let (Some(i), Some(ii)) = (
        leads.iter().position(|l| l.name == "I"),
        leads.iter().position(|l| l.name == "II"),
    ) else {
        return vec![];
    };
    let (li, lii) = (&leads[i], &leads[ii]);
    if li.scale_uv != lii.scale_uv || li.origin_uv != lii.origin_uv {
        return vec![];
    }
    let n = li.samples.len().min(lii.samples.len());
    let (a, b) = (&li.samples[..n], &lii.samples[..n]);
    let scale = li.scale_uv;
    let origin = li.origin_uv;
    type Combine = fn(i32, i32) -> i32;
    let specs: [(&str, f64, Combine); 4] = [
        ("III", 1.0, |i, ii| ii.saturating_sub(i)),
        ("aVR", 0.5, |i, ii| i.saturating_add(ii).saturating_neg()),
        ("aVL", 0.5, |i, ii| i.saturating_mul(2).saturating_sub(ii)),
        ("aVF", 0.5, |i, ii| ii.saturating_mul(2).saturating_sub(i)),
    ];
    let mut new = Vec::new();
    let mut added = Vec::new();
    for (name, f, op) in specs {
        if leads.iter().any(|l| l.name == name) {
            continue;
        }
        new.push(WaveLead {
            name: name.to_string(),
            scale_uv: scale * f,
            origin_uv: origin,
            samples: a.iter().zip(b).map(|(&x, &y)| op(x, y)).collect(),
            derived: true,
        });
        added.push(name);
    }
    leads.extend(new);
    sort(leads);
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        for (s, c) in [
            ("MDC_ECG_LEAD_AVR", "aVR"),
            ("Lead I (Einthoven)", "I"),
            ("aVL, augmented voltage, left", "aVL"),
            ("5.6.3-9-61", "III"),
            ("2:64", "aVF"),
            ("2:9", "V7"),
            ("v4r", "V4R"),
            ("MDC_ECG_LEAD_V9", "V9"),
            ("Lead V1", "V1"),
        ] {
            assert_eq!(canonical_lead(s), Some(c), "{s}");
        }
        assert_eq!(canonical_lead("X"), None);
        assert_eq!(canonical_lead("5.6.3-9-999"), None);
    }

    #[test]
    fn derives_exactly() {
        let mk = |name: &str, s: Vec<i32>| WaveLead {
            name: name.into(),
            scale_uv: 4.88,
            origin_uv: 0.0,
            samples: s,
            derived: false,
        };
        let mut l = vec![
            mk("V1", vec![0, 0]),
            mk("II", vec![3, -7]),
            mk("I", vec![1, 2]),
        ];
        let added = derive_limb_leads(&mut l);
        assert_eq!(added, ["III", "aVR", "aVL", "aVF"]);
        let names: Vec<_> = l.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["I", "II", "III", "aVR", "aVL", "aVF", "V1"]);
        let uv = |n: &str, k: usize| l.iter().find(|x| x.name == n).unwrap().uv(k).unwrap();
        // III = II − I; aVR = −(I+II)/2; aVL = I − II/2; aVF = II − I/2.
        assert!((uv("III", 0) - 2.0 * 4.88).abs() < 1e-9);
        assert!((uv("aVR", 0) - (-2.0 * 4.88)).abs() < 1e-9);
        assert!((uv("aVL", 1) - (2.0 + 3.5) * 4.88).abs() < 1e-9);
        assert!((uv("aVF", 1) - (-7.0 - 1.0) * 4.88).abs() < 1e-9);
    }
}
