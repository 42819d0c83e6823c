//! Compact GameStream XML replies (`docs/protocol/moonlight-http.md` § XML replies).
//!
//! Every body is `<?xml version="1.0" encoding="utf-8"?>`, a `\n`, then one line
//! `<root status_code="N" ...>children</root>` (or `<root .../>` without children), no whitespace
//! between elements and no trailing newline, as Boost's `write_xml` writes it for Sunshine and
//! Wolf. Element names are written as given (they are case-sensitive for clients).

/// The XML declaration line, without its newline.
pub const DECLARATION: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;

/// One child of `root`: a leaf with text, or an element with children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// `<name>text</name>` (or `<name/>` when the text is empty).
    Leaf(&'static str, String),
    /// `<name>children</name>`.
    Parent(&'static str, Vec<Node>),
}

impl Node {
    /// A leaf from anything printable.
    pub fn leaf(name: &'static str, text: impl ToString) -> Self {
        Node::Leaf(name, text.to_string())
    }

    fn render(&self, out: &mut String) {
        match self {
            Node::Leaf(name, text) if text.is_empty() => push_empty(out, name),
            Node::Parent(name, children) if children.is_empty() => push_empty(out, name),
            Node::Leaf(name, text) => {
                push_open(out, name);
                escape_into(out, text, false);
                push_close(out, name);
            }
            Node::Parent(name, children) => {
                push_open(out, name);
                for child in children {
                    child.render(out);
                }
                push_close(out, name);
            }
        }
    }
}

fn push_empty(out: &mut String, name: &str) {
    out.push('<');
    out.push_str(name);
    out.push_str("/>");
}

fn push_open(out: &mut String, name: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
}

fn push_close(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// A reply document: `root` with its status attributes and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlReply {
    status_code: u32,
    query: Option<String>,
    status_message: Option<String>,
    children: Vec<Node>,
}

impl XmlReply {
    /// A reply with this `status_code` and no children.
    pub fn status(status_code: u32) -> Self {
        XmlReply {
            status_code,
            query: None,
            status_message: None,
            children: Vec::new(),
        }
    }

    /// `status_code="200"`.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// An error reply with a `status_message`.
    pub fn error(status_code: u32, message: impl Into<String>) -> Self {
        Self::status(status_code).with_message(message)
    }

    /// Sets `status_message`.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.status_message = Some(message.into());
        self
    }

    /// Sets the `query` attribute (written between `status_code` and `status_message`, as
    /// Sunshine does on its 401 reply).
    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// Appends a leaf child.
    pub fn leaf(mut self, name: &'static str, text: impl ToString) -> Self {
        self.children.push(Node::leaf(name, text));
        self
    }

    /// Appends any child.
    pub fn child(mut self, node: Node) -> Self {
        self.children.push(node);
        self
    }

    /// The `status_code`.
    pub fn status_code(&self) -> u32 {
        self.status_code
    }

    /// The document text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(128);
        out.push_str(DECLARATION);
        out.push('\n');
        out.push_str("<root status_code=\"");
        out.push_str(&self.status_code.to_string());
        out.push('"');
        if let Some(query) = &self.query {
            out.push_str(" query=\"");
            escape_into(&mut out, query, true);
            out.push('"');
        }
        if let Some(message) = &self.status_message {
            out.push_str(" status_message=\"");
            escape_into(&mut out, message, true);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str("/>");
        } else {
            out.push('>');
            for child in &self.children {
                child.render(&mut out);
            }
            out.push_str("</root>");
        }
        out
    }
}

/// Whether `c` may appear in an XML 1.0 document.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Escapes `&`, `<`, `>` (and `"` in attributes); characters XML 1.0 forbids (most control
/// characters) become U+FFFD so the document always parses. In attributes, tab, CR and LF are
/// written as character references so that they survive attribute-value normalisation.
pub fn escape_into(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

/// [`escape_into`] into a new string.
pub fn escape(text: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text, attribute);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use quick_xml::events::Event;

    use super::*;

    #[test]
    fn golden_small_bodies() {
        // docs/protocol/moonlight-http.md § Test vectors (XML bodies).
        let decl = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n";
        assert_eq!(
            XmlReply::ok().render(),
            format!("{decl}<root status_code=\"200\"/>")
        );
        assert_eq!(
            XmlReply::ok().leaf("cancel", 1).render(),
            format!("{decl}<root status_code=\"200\"><cancel>1</cancel></root>")
        );
        assert_eq!(
            XmlReply::error(
                401,
                "The client is not authorized. Certificate verification failed."
            )
            .with_query("/applist")
            .render(),
            format!(
                "{decl}<root status_code=\"401\" query=\"/applist\" status_message=\"The client is not \
                 authorized. Certificate verification failed.\"/>"
            )
        );
        assert_eq!(
            XmlReply::ok().leaf("AppTitle", "").render(),
            format!("{decl}<root status_code=\"200\"><AppTitle/></root>")
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a&b<c>d\"e", false), "a&amp;b&lt;c&gt;d\"e");
        assert_eq!(escape("a&b<c>d\"e", true), "a&amp;b&lt;c&gt;d&quot;e");
        assert_eq!(escape("x\u{1}y", false), "x\u{FFFD}y");
        assert_eq!(escape("Grüße 🎮", false), "Grüße 🎮");
    }

    /// Parses a rendered body with quick-xml: (root attributes, [(leaf name, text)]).
    type Pairs = Vec<(String, String)>;

    fn parse(body: &str) -> (Pairs, Pairs) {
        let (decl, rest) = body.split_once('\n').expect("declaration line");
        assert_eq!(decl, DECLARATION);
        assert!(!rest.contains('\n'), "no newline inside the document");
        let mut reader = quick_xml::Reader::from_str(rest);
        let mut attrs = Vec::new();
        let mut leaves = Vec::new();
        let mut current: Option<String> = None;
        let mut text = String::new();
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"root" => {
                    for a in e.attributes() {
                        let a = a.expect("attribute");
                        let value = a.unescape_value().expect("attribute value").into_owned();
                        attrs.push((String::from_utf8(a.key.as_ref().to_vec()).unwrap(), value));
                    }
                }
                Event::Start(e) => {
                    current = Some(String::from_utf8(e.name().as_ref().to_vec()).unwrap());
                    text.clear();
                }
                Event::Text(t) => text.push_str(&t.decode().unwrap()),
                Event::GeneralRef(r) => {
                    let raw: &[u8] = &r;
                    let name = String::from_utf8(raw.to_vec()).unwrap();
                    let resolved = match name.as_str() {
                        "amp" => "&".to_string(),
                        "lt" => "<".to_string(),
                        "gt" => ">".to_string(),
                        "quot" => "\"".to_string(),
                        n if n.starts_with('#') => {
                            char::from_u32(n[1..].parse().unwrap()).unwrap().to_string()
                        }
                        other => panic!("unexpected entity {other}"),
                    };
                    text.push_str(&resolved);
                }
                Event::End(e) if e.name().as_ref() != b"root" => {
                    if let Some(name) = current.take() {
                        leaves.push((name, std::mem::take(&mut text)));
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        (attrs, leaves)
    }

    fn sanitised(s: &str) -> String {
        s.chars()
            .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
            .collect()
    }

    proptest! {
        #[test]
        fn rendered_text_round_trips(title in any::<String>(), message in any::<String>(), code in 0u32..1000) {
            let body = XmlReply::error(code, message.clone()).leaf("AppTitle", title.clone()).render();
            let (attrs, leaves) = parse(&body);
            prop_assert_eq!(&attrs[0], &("status_code".to_string(), code.to_string()));
            prop_assert_eq!(&attrs[1], &("status_message".to_string(), sanitised(&message)));
            let expected_title = sanitised(&title);
            if expected_title.is_empty() {
                prop_assert!(leaves.is_empty());
            } else {
                prop_assert_eq!(&leaves[0], &("AppTitle".to_string(), expected_title));
            }
        }

        #[test]
        fn escaped_text_has_no_markup(text in any::<String>()) {
            let escaped = escape(&text, true);
            prop_assert!(!escaped.contains('<') && !escaped.contains('>') && !escaped.contains('"'));
            prop_assert!(!escaped.chars().any(|c| c.is_control()));
        }
    }
}
