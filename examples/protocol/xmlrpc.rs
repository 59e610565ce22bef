//! XML-RPC decoding, dispatch and encoding for the `xmlrpc` example, in a module of its own so
//! that the fuzz target `fuzz/fuzz_targets/xmlrpc.rs` runs this very code (both include it
//! with `#[path]`). See `examples/xmlrpc.rs` for the methods, the rules and the limits.
//!
//! What one request may cost is bounded: the document may hold at most
//! [`Limits::max_elements`] elements (counted as quick-xml reads them, so the element tree
//! never grows past it), a `system.multicall` at most [`Limits::max_calls`] calls (checked
//! before any runs), and the answer is written value by value into a buffer that may not grow
//! past [`Limits::max_answer`]; a multicall's results are written one at a time, each dropped
//! once written.

use base64::Engine as _;
use quick_xml::events::Event;
use quick_xml::Reader;

/// What one request may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most calls in one `system.multicall`; more get a fault and none runs.
    pub max_calls: usize,
    /// The most XML elements in a request document; more get a fault. This is what bounds
    /// the decoded form: an element costs the parser about 200 bytes, however short its text.
    pub max_elements: usize,
    /// The most bytes of answer (the response body). A value that would pass it is answered
    /// with a fault instead; in a multicall, only the calls whose results do not fit get one.
    pub max_answer: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_calls: 100,
            max_elements: 10_000,
            max_answer: 2 * 1024 * 1024,
        }
    }
}

/// The `<methodResponse>` document that answers a `POST` body: the method's result, or a
/// fault.
pub fn answer(body: &[u8], limits: &Limits) -> String {
    let mut out = Out::new(limits.max_answer);
    match parse_call(body, limits.max_elements) {
        Ok((method, params)) if method == "system.multicall" => {
            multicall(params, limits, &mut out);
        }
        Ok((method, params)) => out.response(call(&method, params)),
        Err(fault) => out.response(Err(fault)),
    }
    out.xml
}

/// An XML-RPC value.
#[derive(Debug, Clone, PartialEq)]
enum XmlValue {
    Int(i64),
    Bool(bool),
    Double(f64),
    String(String),
    Base64(Vec<u8>),
    /// Kept as sent, such as `20240102T03:04:05`: XML-RPC gives it no time zone.
    DateTime(String),
    Array(Vec<XmlValue>),
    Struct(Vec<(String, XmlValue)>),
    Nil,
}

/// An XML-RPC fault: code and message.
#[derive(Debug)]
struct Fault(i64, String);

const NOT_WELL_FORMED: i64 = -32700;
const INVALID_XMLRPC: i64 = -32600;
const NO_SUCH_METHOD: i64 = -32601;
const BAD_PARAMS: i64 = -32602;
const INTERNAL: i64 = -32603;
/// "System error": the request is over one of the [`Limits`].
const LIMIT: i64 = -32400;

/// The methods, with their help and signature (Python: `register_function` and
/// `register_introspection_functions`).
const METHODS: &[(&str, &str, &[&str])] = &[
    ("add", "add(a, b): a + b, for two ints or doubles.", &["int", "int", "int"]),
    ("echo", "echo(x): returns x, whatever its type.", &["any", "any"]),
    ("system.listMethods", "system.listMethods(): the names of the methods.", &["array"]),
    ("system.methodHelp", "system.methodHelp(name): what a method does.", &["string", "string"]),
    (
        "system.methodSignature",
        "system.methodSignature(name): [[result type, parameter types...]].",
        &["array", "string"],
    ),
    (
        "system.multicall",
        "system.multicall(calls): runs [{methodName, params}...]; each result is [value] or a fault struct.",
        &["array", "array"],
    ),
];

/// Runs one method other than a top-level `system.multicall` (which [`multicall`] runs, to
/// write its results one by one): here it is a nested one, which is refused.
fn call(method: &str, params: Vec<XmlValue>) -> Result<XmlValue, Fault> {
    let arity = |n: usize| {
        if params.len() == n {
            Ok(())
        } else {
            Err(Fault(
                BAD_PARAMS,
                format!("{method} takes {n} parameters, got {}", params.len()),
            ))
        }
    };
    match method {
        "add" => {
            arity(2)?;
            match (&params[0], &params[1]) {
                (XmlValue::Int(a), XmlValue::Int(b)) => a
                    .checked_add(*b)
                    .map(XmlValue::Int)
                    .ok_or_else(|| Fault(INTERNAL, "integer overflow".into())),
                (a, b) => match (number(a), number(b)) {
                    (Some(a), Some(b)) => Ok(XmlValue::Double(a + b)),
                    _ => Err(Fault(BAD_PARAMS, "add takes two numbers".into())),
                },
            }
        }
        "echo" => {
            arity(1)?;
            Ok(params.into_iter().next().unwrap_or(XmlValue::Nil))
        }
        "system.listMethods" => {
            arity(0)?;
            Ok(XmlValue::Array(
                METHODS
                    .iter()
                    .map(|(name, _, _)| XmlValue::String((*name).into()))
                    .collect(),
            ))
        }
        "system.methodHelp" | "system.methodSignature" => {
            arity(1)?;
            let XmlValue::String(name) = &params[0] else {
                return Err(Fault(BAD_PARAMS, "a method name is a string".into()));
            };
            let Some((_, help, signature)) = METHODS.iter().find(|(n, _, _)| n == name) else {
                return Err(Fault(
                    NO_SUCH_METHOD,
                    format!("method {name:?} is not supported"),
                ));
            };
            Ok(if method == "system.methodHelp" {
                XmlValue::String((*help).into())
            } else {
                let types = signature
                    .iter()
                    .map(|t| XmlValue::String((*t).into()))
                    .collect();
                XmlValue::Array(vec![XmlValue::Array(types)])
            })
        }
        "system.multicall" => Err(Fault(
            INVALID_XMLRPC,
            "system.multicall may not nest".into(),
        )),
        _ => Err(Fault(
            NO_SUCH_METHOD,
            format!("method {method:?} is not supported"),
        )),
    }
}

/// `system.multicall(calls)`: checks the calls' count before running any, then runs them in
/// order, writing each result (`[value]`, or a fault struct) as soon as it is known.
fn multicall(params: Vec<XmlValue>, limits: &Limits, out: &mut Out) {
    let calls = match <[XmlValue; 1]>::try_from(params) {
        Ok([XmlValue::Array(calls)]) => calls,
        Ok(_) => {
            return out.response(Err(Fault(
                BAD_PARAMS,
                "system.multicall takes an array".into(),
            )))
        }
        Err(params) => {
            return out.response(Err(Fault(
                BAD_PARAMS,
                format!("system.multicall takes 1 parameters, got {}", params.len()),
            )))
        }
    };
    if calls.len() > limits.max_calls {
        return out.response(Err(Fault(
            LIMIT,
            format!(
                "a system.multicall holds at most {} calls, not {}",
                limits.max_calls,
                calls.len()
            ),
        )));
    }
    out.raw("<?xml version=\"1.0\"?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n");
    for entry in calls {
        out.value_or_fault(&multicall_one(entry));
    }
    out.raw("</data></array></value>\n</param>\n</params>\n</methodResponse>\n");
}

/// One call of a multicall: `[result]`, or the fault as a struct.
fn multicall_one(entry: XmlValue) -> XmlValue {
    let result = match entry {
        XmlValue::Struct(members) => {
            let mut name = None;
            let mut params = None;
            for (key, value) in members {
                match key.as_str() {
                    "methodName" if name.is_none() => name = Some(value),
                    "params" if params.is_none() => params = Some(value),
                    _ => {}
                }
            }
            match (name, params) {
                (Some(XmlValue::String(name)), Some(XmlValue::Array(params))) => {
                    call(&name, params)
                }
                (Some(XmlValue::String(name)), None) => call(&name, Vec::new()),
                _ => Err(Fault(
                    INVALID_XMLRPC,
                    "each call is {methodName, params}".into(),
                )),
            }
        }
        _ => Err(Fault(INVALID_XMLRPC, "each call is a struct".into())),
    };
    match result {
        Ok(value) => XmlValue::Array(vec![value]),
        Err(Fault(code, message)) => fault_struct(code, message),
    }
}

fn number(value: &XmlValue) -> Option<f64> {
    match value {
        XmlValue::Int(i) => Some(*i as f64),
        XmlValue::Double(d) => Some(*d),
        _ => None,
    }
}

fn fault_struct(code: i64, message: String) -> XmlValue {
    XmlValue::Struct(vec![
        ("faultCode".into(), XmlValue::Int(code)),
        ("faultString".into(), XmlValue::String(message)),
    ])
}

// ----- Reading: quick-xml events into a small element tree, then the XML-RPC model. -----

/// A parsed XML element: its name, and its children, text merged.
#[derive(Debug)]
struct Element {
    name: String,
    children: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Element(Element),
    Text(String),
}

/// Deeper XML is refused: a 1 MiB body could otherwise nest tens of thousands of arrays.
const MAX_DEPTH: usize = 64;

fn malformed(why: impl std::fmt::Display) -> Fault {
    Fault(
        NOT_WELL_FORMED,
        format!("parse error: not well formed: {why}"),
    )
}

/// Reads a whole document with quick-xml into its root element, refusing more than
/// `max_elements` elements. Built with an explicit stack, so no input can overflow ours.
fn parse_document(body: &[u8], max_elements: usize) -> Result<Element, Fault> {
    let text = std::str::from_utf8(body).map_err(malformed)?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    let mut elements = 0usize;
    loop {
        let event = reader.read_event().map_err(malformed)?;
        if matches!(event, Event::Start(_) | Event::Empty(_)) {
            elements += 1;
            if elements > max_elements {
                return Err(Fault(
                    LIMIT,
                    format!("a request holds at most {max_elements} XML elements"),
                ));
            }
        }
        let node = match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(malformed(format!("nested deeper than {MAX_DEPTH}")));
                }
                let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                stack.push(Element {
                    name,
                    children: Vec::new(),
                });
                continue;
            }
            Event::Empty(empty) => Node::Element(Element {
                name: String::from_utf8_lossy(empty.name().as_ref()).into_owned(),
                children: Vec::new(),
            }),
            Event::End(_) => match stack.pop() {
                Some(element) => Node::Element(element),
                None => return Err(malformed("unexpected end tag")),
            },
            Event::Text(text) => Node::Text(text.xml10_content().map_err(malformed)?.into_owned()),
            Event::CData(data) => Node::Text(data.decode().map_err(malformed)?.into_owned()),
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(malformed)? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = reference.decode().map_err(malformed)?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| malformed(format!("unknown entity &{name};")))?
                            .to_owned()
                    }
                };
                Node::Text(resolved)
            }
            Event::DocType(_) => return Err(malformed("document type declarations are refused")),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => continue,
            Event::Eof => break,
        };
        match (stack.last_mut(), node) {
            (Some(parent), Node::Text(text)) => match parent.children.last_mut() {
                Some(Node::Text(previous)) => previous.push_str(&text),
                _ => parent.children.push(Node::Text(text)),
            },
            (Some(parent), node) => parent.children.push(node),
            (None, Node::Text(text)) if text.trim().is_empty() => {}
            (None, Node::Text(_)) => return Err(malformed("text outside the root element")),
            (None, Node::Element(element)) if root.is_none() => root = Some(element),
            (None, Node::Element(_)) => return Err(malformed("more than one root element")),
        }
    }
    match (stack.is_empty(), root) {
        (true, Some(root)) => Ok(root),
        _ => Err(malformed("the document ends early")),
    }
}

impl Element {
    fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The element's text (all its text children).
    fn text(&self) -> String {
        let mut text = String::new();
        for node in &self.children {
            if let Node::Text(t) = node {
                text.push_str(t);
            }
        }
        text
    }

    /// The only child element, ignoring whitespace between elements.
    fn only_child(&self) -> Result<&Element, Fault> {
        let mut elements = self.elements();
        match (elements.next(), elements.next()) {
            (Some(child), None) => Ok(child),
            _ => Err(invalid(format!(
                "<{}> needs exactly one element",
                self.name
            ))),
        }
    }

    fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name)
    }
}

fn invalid(why: String) -> Fault {
    Fault(INVALID_XMLRPC, format!("invalid XML-RPC: {why}"))
}

/// `<methodCall>`: the method's name and its parameters.
fn parse_call(body: &[u8], max_elements: usize) -> Result<(String, Vec<XmlValue>), Fault> {
    let root = parse_document(body, max_elements)?;
    if root.name != "methodCall" {
        return Err(invalid(format!(
            "the root is <{}>, not <methodCall>",
            root.name
        )));
    }
    let name = root
        .child("methodName")
        .map(|n| n.text().trim().to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("no <methodName>".into()))?;
    let mut params = Vec::new();
    if let Some(list) = root.child("params") {
        for param in list.elements() {
            let value = param
                .child("value")
                .ok_or_else(|| invalid("<param> without <value>".into()))?;
            params.push(parse_value(value)?);
        }
    }
    Ok((name, params))
}

/// `<value>`: a typed child, or bare text, which is a string.
fn parse_value(value: &Element) -> Result<XmlValue, Fault> {
    if value.elements().next().is_none() {
        return Ok(XmlValue::String(value.text()));
    }
    let typed = value.only_child()?;
    let text = typed.text();
    let bad = |what: &str| invalid(format!("<{}> holds {what}", typed.name));
    Ok(match typed.name.as_str() {
        "int" | "i4" | "i8" => XmlValue::Int(text.trim().parse().map_err(|_| bad("no integer"))?),
        "boolean" => match text.trim() {
            "1" => XmlValue::Bool(true),
            "0" => XmlValue::Bool(false),
            _ => return Err(bad("neither 0 nor 1")),
        },
        "double" => XmlValue::Double(text.trim().parse().map_err(|_| bad("no number"))?),
        "string" => XmlValue::String(text),
        "base64" => {
            // Python wraps base64 at 76 columns: the line breaks are not data.
            let compact: String = text.split_whitespace().collect();
            XmlValue::Base64(
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|_| bad("invalid base64"))?,
            )
        }
        "dateTime.iso8601" => XmlValue::DateTime(text.trim().to_owned()),
        "nil" => XmlValue::Nil,
        "array" => {
            let data = typed.child("data").ok_or_else(|| bad("no <data>"))?;
            XmlValue::Array(data.elements().map(parse_value).collect::<Result<_, _>>()?)
        }
        "struct" => {
            let mut members = Vec::new();
            for member in typed.elements() {
                let name = member
                    .child("name")
                    .ok_or_else(|| bad("a member without <name>"))?;
                let value = member
                    .child("value")
                    .ok_or_else(|| bad("a member without <value>"))?;
                members.push((name.text(), parse_value(value)?));
            }
            XmlValue::Struct(members)
        }
        other => return Err(invalid(format!("unknown type <{other}>"))),
    })
}

// ----- Writing: escaped text in a fixed layout, as Python's Marshaller writes it. -----

/// The answer being written, never longer than its limit (but for the short faults that
/// replace what did not fit).
struct Out {
    xml: String,
    limit: usize,
}

/// The answer would pass its limit.
struct Over;

impl Out {
    fn new(limit: usize) -> Out {
        Out {
            xml: String::new(),
            limit,
        }
    }

    /// Appends `text`, if it fits.
    fn push(&mut self, text: &str) -> Result<(), Over> {
        if self.xml.len() + text.len() > self.limit {
            return Err(Over);
        }
        self.xml.push_str(text);
        Ok(())
    }

    /// Appends the fixed parts of the document, which are short: never refused.
    fn raw(&mut self, text: &str) {
        self.xml.push_str(text);
    }

    /// The fault that replaces an answer over the limit.
    fn over(&self) -> Fault {
        Fault(LIMIT, format!("the answer would pass {} bytes", self.limit))
    }

    /// A whole `<methodResponse>`: the value, or a fault (also when the value does not fit).
    fn response(&mut self, answer: Result<XmlValue, Fault>) {
        let start = self.xml.len();
        if let Ok(value) = &answer {
            self.raw("<?xml version=\"1.0\"?>\n<methodResponse>\n<params>\n<param>\n");
            if self.value(value).is_ok() {
                self.raw("</param>\n</params>\n</methodResponse>\n");
                return;
            }
            self.xml.truncate(start);
        }
        let Fault(code, message) = match answer {
            Ok(_) => self.over(),
            Err(fault) => fault,
        };
        self.raw("<?xml version=\"1.0\"?>\n<methodResponse>\n<fault>\n");
        self.fault_value(code, message);
        self.raw("</fault>\n</methodResponse>\n");
    }

    /// One value of a multicall's result array; a fault struct in its place if it does not fit.
    fn value_or_fault(&mut self, value: &XmlValue) {
        let mark = self.xml.len();
        if self.value(value).is_err() {
            self.xml.truncate(mark);
            let Fault(code, message) = self.over();
            self.fault_value(code, message);
        }
    }

    /// A fault struct, written whatever the limit: it is short, but for a method name that
    /// came from the request.
    fn fault_value(&mut self, code: i64, message: String) {
        let limit = std::mem::replace(&mut self.limit, usize::MAX);
        // Without a limit, writing cannot fail.
        let _ = self.value(&fault_struct(code, message));
        self.limit = limit;
    }

    fn value(&mut self, value: &XmlValue) -> Result<(), Over> {
        // Python's Marshaller escapes `&`, `<` and `>` only, as does `partial_escape`.
        let escape = quick_xml::escape::partial_escape;
        self.push("<value>")?;
        match value {
            // Python refuses <int> beyond 32 bits but reads <i8>.
            XmlValue::Int(i) if i32::try_from(*i).is_ok() => {
                self.push(&format!("<int>{i}</int>"))?
            }
            XmlValue::Int(i) => self.push(&format!("<i8>{i}</i8>"))?,
            XmlValue::Bool(b) => self.push(&format!("<boolean>{}</boolean>", u8::from(*b)))?,
            XmlValue::Double(d) => self.push(&format!("<double>{d:?}</double>"))?,
            XmlValue::String(s) => {
                self.push("<string>")?;
                self.push(&escape(s.as_str()))?;
                self.push("</string>")?;
            }
            XmlValue::Base64(bytes) => {
                // Encoded length, checked before encoding: 4 bytes per 3, padded.
                if self.xml.len() + bytes.len().div_ceil(3) * 4 > self.limit {
                    return Err(Over);
                }
                self.push("<base64>")?;
                base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut self.xml);
                self.push("</base64>")?;
            }
            XmlValue::DateTime(s) => {
                self.push("<dateTime.iso8601>")?;
                self.push(&escape(s.as_str()))?;
                self.push("</dateTime.iso8601>")?;
            }
            XmlValue::Nil => self.push("<nil/>")?,
            XmlValue::Array(items) => {
                self.push("<array><data>\n")?;
                for item in items {
                    self.value(item)?;
                }
                self.push("</data></array>")?;
            }
            XmlValue::Struct(members) => {
                self.push("<struct>\n")?;
                for (name, member) in members {
                    self.push("<member>\n<name>")?;
                    self.push(&escape(name.as_str()))?;
                    self.push("</name>\n")?;
                    self.value(member)?;
                    self.push("</member>\n")?;
                }
                self.push("</struct>")?;
            }
        }
        self.push("</value>\n")
    }
}
