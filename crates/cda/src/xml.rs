//! A thin element stack over `quick_xml::Writer`: every text and attribute value goes through
//! quick-xml's escaping; elements close in the order they were opened.

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use crate::CdaError;

pub(crate) struct Doc {
    w: Writer<Vec<u8>>,
    open: Vec<&'static str>,
}

impl Doc {
    pub(crate) fn new() -> Result<Doc, CdaError> {
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        Ok(Doc {
            w,
            open: Vec::new(),
        })
    }

    fn start(name: &'static str, attrs: &[(&str, &str)]) -> BytesStart<'static> {
        let mut e = BytesStart::new(name);
        for a in attrs {
            e.push_attribute(*a);
        }
        e
    }

    /// `<name attrs…>`, closed by [`Doc::close`].
    pub(crate) fn open(
        &mut self,
        name: &'static str,
        attrs: &[(&str, &str)],
    ) -> Result<(), CdaError> {
        self.w.write_event(Event::Start(Self::start(name, attrs)))?;
        self.open.push(name);
        Ok(())
    }

    /// Closes the innermost open element.
    pub(crate) fn close(&mut self) -> Result<(), CdaError> {
        let name = self
            .open
            .pop()
            .ok_or(CdaError::Internal("close without open"))?;
        self.w.write_event(Event::End(BytesEnd::new(name)))?;
        Ok(())
    }

    /// `<name attrs…/>`.
    pub(crate) fn empty(
        &mut self,
        name: &'static str,
        attrs: &[(&str, &str)],
    ) -> Result<(), CdaError> {
        self.w.write_event(Event::Empty(Self::start(name, attrs)))?;
        Ok(())
    }

    /// `<name attrs…>text</name>`.
    pub(crate) fn text(
        &mut self,
        name: &'static str,
        attrs: &[(&str, &str)],
        text: &str,
    ) -> Result<(), CdaError> {
        self.w.write_event(Event::Start(Self::start(name, attrs)))?;
        self.w.write_event(Event::Text(BytesText::new(text)))?;
        self.w.write_event(Event::End(BytesEnd::new(name)))?;
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<String, CdaError> {
        if !self.open.is_empty() {
            return Err(CdaError::Internal("unclosed element"));
        }
        let mut bytes = self.w.into_inner();
        bytes.push(b'\n');
        String::from_utf8(bytes).map_err(|_| CdaError::Internal("writer produced non-UTF-8"))
    }
}
