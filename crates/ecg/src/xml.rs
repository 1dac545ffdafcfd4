//! Text decoding and small roxmltree helpers shared by the XML adapters.

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};
use roxmltree::{Document, Node, ParsingOptions};

use crate::EcgError;

/// Picks the encoding: BOM, then UTF-16 without BOM (`<\0` / `\0<`), then the XML
/// declaration's `encoding`, else UTF-8.
fn sniff(bytes: &[u8]) -> (&'static Encoding, usize) {
    if let Some((enc, bom)) = Encoding::for_bom(bytes) {
        return (enc, bom);
    }
    match bytes {
        [b'<', 0, ..] => return (UTF_16LE, 0),
        [0, b'<', ..] => return (UTF_16BE, 0),
        _ => {}
    }
    let head = &bytes[..bytes.len().min(200)];
    if head.starts_with(b"<?xml") {
        let end = head.iter().position(|&b| b == b'>').unwrap_or(head.len());
        let decl = String::from_utf8_lossy(&head[..end]);
        if let Some(i) = decl.find("encoding") {
            let rest = &decl[i + 8..];
            let rest = rest.trim_start().trim_start_matches('=').trim_start();
            let q = rest.chars().next().unwrap_or('"');
            let label: String = rest.chars().skip(1).take_while(|&c| c != q).collect();
            if let Some(e) = Encoding::for_label(label.trim().as_bytes()) {
                // A declaration saying UTF-16 in bytes that are not UTF-16 is read as UTF-8.
                if e != UTF_16LE && e != UTF_16BE {
                    return (e, 0);
                }
            }
        }
    }
    (UTF_8, 0)
}

/// Decodes the whole document. The warning says when a fallback was needed.
pub(crate) fn decode(bytes: &[u8]) -> Result<(String, Option<String>), EcgError> {
    let (enc, bom) = sniff(bytes);
    let body = &bytes[bom..];
    if enc == UTF_8 {
        match std::str::from_utf8(body) {
            Ok(s) => return Ok((s.to_string(), None)),
            Err(e) => {
                // Chinese systems sometimes send GB18030 under a UTF-8 (or no) declaration.
                let (s, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(body);
                if had_errors {
                    return Err(EcgError::Encoding(format!(
                        "invalid UTF-8 at byte {} and not GB18030 either",
                        e.valid_up_to() + bom
                    )));
                }
                return Ok((
                    s.into_owned(),
                    Some(format!(
                        "text is not UTF-8 (byte {}); decoded as GB18030",
                        e.valid_up_to() + bom
                    )),
                ));
            }
        }
    }
    let (s, had_errors) = enc.decode_without_bom_handling(body);
    let warning = had_errors.then(|| {
        format!(
            "undecodable bytes in {} text replaced by U+FFFD",
            enc.name()
        )
    });
    Ok((s.into_owned(), warning))
}

/// Decodes at most `max` bytes for sniffing (lossy).
pub(crate) fn decode_prefix(bytes: &[u8], max: usize) -> Option<String> {
    let (enc, bom) = sniff(bytes);
    let mut end = bytes.len().min(max + bom);
    if enc == UTF_16LE || enc == UTF_16BE {
        end -= (end - bom) % 2;
    }
    let (s, _) = enc.decode_without_bom_handling(bytes.get(bom..end)?);
    Some(s.into_owned())
}

/// Local name of the first element of a (possibly truncated) document.
pub(crate) fn root_name(text: &str) -> Option<String> {
    let mut rest = text.trim_start_matches('\u{feff}');
    loop {
        let i = rest.find('<')?;
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("<?") {
            rest = &r[r.find("?>")? + 2..];
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = &r[r.find("-->")? + 3..];
        } else if rest.starts_with("<!") {
            // DOCTYPE, possibly with an internal subset.
            let r = &rest[2..];
            let end = match (r.find('['), r.find('>')) {
                (Some(b), Some(g)) if b < g => r.find("]>").map(|x| x + 2)?,
                (_, Some(g)) => g + 1,
                _ => return None,
            };
            rest = &r[end..];
        } else {
            let name: String = rest[1..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
                .collect();
            let local = name.rsplit(':').next().unwrap_or("").to_string();
            return (!local.is_empty()).then_some(local);
        }
    }
}

/// Where a DTD declares an entity: the first `<!ENTITY` after a `<!DOCTYPE` (byte offset),
/// `None` when the document declares none. Entity declarations can only stand in a DOCTYPE's
/// internal subset, and `<!ENTITY` is case-sensitive; a `<!ENTITY` in a comment or CDATA
/// after a DOCTYPE is counted too (refused: no ECG cart writes one).
fn entity_declaration(text: &str) -> Option<usize> {
    let doctype = text.find("<!DOCTYPE")?;
    text[doctype..].find("<!ENTITY").map(|i| doctype + i)
}

/// Parses with DTDs allowed (external DTDs and entities never loaded: roxmltree resolves
/// none) and a node limit. A DTD that declares entities is refused before roxmltree sees it:
/// roxmltree bounds the references below one reference (255, depth 10) but not their sum,
/// so a few KB of internal entities referenced from the body expand to gigabytes (issue 16,
/// finding 2). ECG carts do not declare entities (GE MUSE names its DTD by `SYSTEM` only).
pub(crate) fn parse_doc(text: &str, node_limit: u32) -> Result<Document<'_>, EcgError> {
    if let Some(at) = entity_declaration(text) {
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        return Err(EcgError::Xml {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
            message: "the DOCTYPE declares entities (<!ENTITY>), which are refused: \
                      their expansion is unbounded"
                .into(),
        });
    }
    let opt = ParsingOptions {
        allow_dtd: true,
        nodes_limit: node_limit,
        // No resolver: an external entity is never loaded (it stays unresolved).
        entity_resolver: None,
    };
    Document::parse_with_options(text, opt).map_err(|e| {
        let p = e.pos();
        EcgError::Xml {
            line: p.row,
            column: p.col,
            message: e.to_string(),
        }
    })
}

/// First child element with local name `name`.
pub(crate) fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

/// Child elements with local name `name`.
pub(crate) fn children<'a, 'i: 'a>(
    n: Node<'a, 'i>,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// Follows a `/`-separated path of child names.
pub(crate) fn at<'a, 'i>(n: Node<'a, 'i>, path: &str) -> Option<Node<'a, 'i>> {
    let mut cur = n;
    for p in path.split('/').filter(|p| !p.is_empty()) {
        cur = child(cur, p)?;
    }
    Some(cur)
}

/// All text below `n`, trimmed; `None` when empty.
pub(crate) fn text(n: Node) -> Option<String> {
    let mut s = String::new();
    for d in n.descendants().filter(|d| d.is_text()) {
        s.push_str(d.text().unwrap_or(""));
    }
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// All text below `n`, untrimmed, borrowed from the document when it is one text node (the
/// usual case for large digit lists: no copy).
pub(crate) fn text_ref<'a>(n: Node<'a, '_>) -> std::borrow::Cow<'a, str> {
    let mut texts = n.descendants().filter(|d| d.is_text());
    let Some(first) = texts.next() else {
        return std::borrow::Cow::Borrowed("");
    };
    let first = first.text().unwrap_or("");
    match texts.next() {
        None => std::borrow::Cow::Borrowed(first),
        Some(second) => {
            let mut s = String::from(first);
            s.push_str(second.text().unwrap_or(""));
            for d in texts {
                s.push_str(d.text().unwrap_or(""));
            }
            std::borrow::Cow::Owned(s)
        }
    }
}

/// Text at a path below `n`.
pub(crate) fn text_at(n: Node, path: &str) -> Option<String> {
    at(n, path).and_then(text)
}

/// Trimmed non-empty attribute.
pub(crate) fn attr(n: Node, name: &str) -> Option<String> {
    n.attribute(name)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `/a/b[2]/c` path of an element, for error messages.
pub(crate) fn path(n: Node) -> String {
    let mut parts = Vec::new();
    let mut cur = Some(n);
    while let Some(c) = cur {
        if c.is_element() {
            let name = c.tag_name().name();
            let same: Vec<_> = c
                .parent()
                .map(|p| {
                    p.children()
                        .filter(|s| s.is_element() && s.tag_name().name() == name)
                        .collect()
                })
                .unwrap_or_default();
            if same.len() > 1 {
                let idx = same.iter().position(|s| *s == c).unwrap_or(0) + 1;
                parts.push(format!("{name}[{idx}]"));
            } else {
                parts.push(name.to_string());
            }
        }
        cur = c.parent();
    }
    parts.reverse();
    format!("/{}", parts.join("/"))
}

/// 1-based line of a node.
pub(crate) fn line(n: Node) -> u32 {
    n.document().text_pos_at(n.range().start).row
}

/// An [`EcgError::Invalid`] at `n`.
pub(crate) fn invalid(n: Node, reason: impl Into<String>) -> EcgError {
    EcgError::Invalid {
        path: path(n),
        line: line(n),
        reason: reason.into(),
    }
}

/// Parses a decimal, tolerating surrounding white space.
pub(crate) fn num(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_boms_and_declarations() {
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("<a>中</a>".encode_utf16().flat_map(|u| u.to_le_bytes()))
            .collect();
        assert_eq!(decode(&le).unwrap().0, "<a>中</a>");
        let be: Vec<u8> = "<a>中</a>"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        assert_eq!(decode(&be).unwrap().0, "<a>中</a>");
        let latin = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>\xe9</a>";
        assert!(decode(latin).unwrap().0.ends_with("<a>\u{e9}</a>"));
        let (gb, w) = decode(&[b'<', b'a', b'>', 0xD6, 0xD0, b'<', b'/', b'a', b'>']).unwrap();
        assert_eq!(gb, "<a>中</a>");
        assert!(w.unwrap().contains("GB18030"));
    }

    #[test]
    fn root_names() {
        assert_eq!(
            root_name(
                "<?xml version='1.0'?>\n<!DOCTYPE RestingECG SYSTEM \"restecg.dtd\">\n<RestingECG>"
            )
            .as_deref(),
            Some("RestingECG")
        );
        assert_eq!(
            root_name("<!-- x --><v3:AnnotatedECG xmlns:v3='urn:hl7-org:v3'>").as_deref(),
            Some("AnnotatedECG")
        );
        assert_eq!(
            root_name("<!DOCTYPE a [<!ENTITY x \"y\">]><restingecgdata>").as_deref(),
            Some("restingecgdata")
        );
        assert_eq!(root_name("no xml"), None);
    }

    #[test]
    fn paths_and_limits() {
        let doc = parse_doc("<r><a/><a><b/></a></r>", 100).unwrap();
        let b = doc.descendants().find(|n| n.has_tag_name("b")).unwrap();
        assert_eq!(path(b), "/r/a[2]/b");
        assert!(matches!(
            parse_doc("<r><a/><a/><a/><a/></r>", 3),
            Err(EcgError::Xml { .. })
        ));
        // External entities are never loaded; any entity declaration is refused.
        let e = parse_doc(
            "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>",
            100,
        );
        assert!(e.is_err() || text(e.unwrap().root_element()).is_none());
        let e = parse_doc(
            "<?xml version='1.0'?>\n<!DOCTYPE r [\n  <!ENTITY x \"y\">]><r>&x;</r>",
            100,
        );
        assert!(
            matches!(e, Err(EcgError::Xml { line: 3, column: 3, ref message }) if message.contains("ENTITY"))
        );
        // A DOCTYPE without entities (GE MUSE's) and predefined entities still parse.
        let d = parse_doc(
            "<!DOCTYPE r SYSTEM \"restecg.dtd\"><r>a &amp; b &lt;!ENTITY</r>",
            100,
        )
        .unwrap();
        assert_eq!(text(d.root_element()).as_deref(), Some("a & b <!ENTITY"));
    }
}
