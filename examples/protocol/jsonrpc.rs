//! JSON-RPC 2.0 decoding and dispatch for the `jsonrpc` example, in a module of its own so
//! that the fuzz target `fuzz/fuzz_targets/jsonrpc.rs` runs this very code (both include it
//! with `#[path]`). See `examples/jsonrpc.rs` for what the protocol rules are, and for the
//! limits.
//!
//! What one request may cost is bounded before any of it runs. A first pass over the body
//! (serde's [`IgnoredAny`] walk, which allocates nothing) counts its JSON values and the
//! calls of a batch; only a body within [`Limits::max_values`] and [`Limits::max_batch`] is
//! decoded into `serde_json::Value`s, whose size then stays within a few hundred bytes per
//! value. Answers are serialized one by one straight into the response body, which may not
//! grow past [`Limits::max_answer`]: an answer that would is replaced by an error.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Value};

/// State shared by every request: how many notifications have run.
#[derive(Default)]
pub struct Counters {
    notifications: AtomicU64,
}

/// What one request may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most calls in a batch; a longer batch is answered with one "Invalid Request"
    /// error, and none of its calls run.
    pub max_batch: usize,
    /// The most JSON values (each number, string, `null`, boolean, array and object counts
    /// one) in a request body; more are refused as one "Invalid Request" error. This is what
    /// bounds the decoded form: a `serde_json::Value` object costs about 700 bytes, however
    /// short its text.
    pub max_values: usize,
    /// The most bytes of answer (the response body); an answer that would pass it is
    /// replaced by an "Internal error" that says so, with the call's id.
    pub max_answer: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_batch: 100,
            max_values: 10_000,
            max_answer: 2 * 1024 * 1024,
        }
    }
}

/// A JSON-RPC error object, by the specification's code.
struct RpcError {
    code: i64,
    data: Option<String>,
}

impl RpcError {
    const PARSE: i64 = -32700;
    const INVALID_REQUEST: i64 = -32600;
    const METHOD_NOT_FOUND: i64 = -32601;
    const INVALID_PARAMS: i64 = -32602;
    const INTERNAL: i64 = -32603;

    fn new(code: i64) -> RpcError {
        RpcError { code, data: None }
    }

    fn with_data(code: i64, data: impl Into<String>) -> RpcError {
        RpcError {
            code,
            data: Some(data.into()),
        }
    }

    fn to_json(&self, id: Value) -> Value {
        let message = match self.code {
            RpcError::PARSE => "Parse error",
            RpcError::INVALID_REQUEST => "Invalid Request",
            RpcError::METHOD_NOT_FOUND => "Method not found",
            RpcError::INVALID_PARAMS => "Invalid params",
            _ => "Internal error",
        };
        let mut error = json!({ "code": self.code, "message": message });
        if let (Some(data), Some(object)) = (&self.data, error.as_object_mut()) {
            object.insert("data".into(), json!(data));
        }
        json!({ "jsonrpc": "2.0", "error": error, "id": id })
    }

    /// The whole answer to a request refused as a whole: one error object, id `null`.
    fn answer(&self) -> Vec<u8> {
        // A Value with string keys always serializes.
        serde_json::to_vec(&self.to_json(Value::Null)).unwrap_or_default()
    }
}

/// Answers a POST body: the response body, or `None` when nothing is to be sent back
/// (notifications only).
pub fn rpc(body: &[u8], counters: &Counters, limits: &Limits) -> Option<Vec<u8>> {
    // First the cost, with nothing decoded yet.
    let batch = match census(body, limits.max_values) {
        Ok(batch) => batch,
        Err(Census::Syntax) => return Some(RpcError::new(RpcError::PARSE).answer()),
        Err(Census::TooManyValues) => {
            return Some(
                RpcError::with_data(
                    RpcError::INVALID_REQUEST,
                    format!("a request holds at most {} JSON values", limits.max_values),
                )
                .answer(),
            )
        }
    };
    match batch {
        Some(0) => return Some(RpcError::new(RpcError::INVALID_REQUEST).answer()),
        Some(calls) if calls > limits.max_batch => {
            return Some(
                RpcError::with_data(
                    RpcError::INVALID_REQUEST,
                    format!("a batch holds at most {} calls", limits.max_batch),
                )
                .answer(),
            )
        }
        _ => {}
    }
    // The census read the whole body, so this cannot fail; if it did, it is a parse error.
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return Some(RpcError::new(RpcError::PARSE).answer());
    };
    let mut out = Answer::new(limits.max_answer);
    match message {
        Value::Array(batch) => {
            let mut answered = false;
            for call in batch {
                if let Some((id, answer)) = one(call, counters) {
                    out.write(if answered { "," } else { "[" }.as_bytes());
                    out.push(id, &answer);
                    answered = true;
                }
            }
            if !answered {
                return None;
            }
            out.write(b"]");
        }
        call => {
            let (id, answer) = one(call, counters)?;
            out.push(id, &answer);
        }
    }
    Some(out.body)
}

/// Why [`census`] refused a body.
#[derive(Debug)]
enum Census {
    /// Not JSON.
    Syntax,
    /// More than the allowed number of values.
    TooManyValues,
}

/// Walks the whole body without decoding it: whether it is JSON with at most `max_values`
/// values, and if it is an array (a batch), how many elements it has.
fn census(body: &[u8], max_values: usize) -> Result<Option<usize>, Census> {
    let counter = Counter {
        values: Cell::new(0),
        max: max_values,
    };
    let mut reader = serde_json::Deserializer::from_slice(body);
    let outcome = Count {
        counter: &counter,
        top: true,
    }
    .deserialize(&mut reader)
    .and_then(|batch| reader.end().map(|()| batch));
    outcome.map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            Census::TooManyValues
        } else {
            Census::Syntax
        }
    })
}

/// The running count of [`census`].
struct Counter {
    values: Cell<usize>,
    max: usize,
}

/// One value of the walk; `top` for the body itself, whose array length is the batch size.
#[derive(Clone, Copy)]
struct Count<'c> {
    counter: &'c Counter,
    top: bool,
}

impl Count<'_> {
    /// Counts one value, failing (as a data error, not a syntax one) past the maximum.
    fn tick<E: de::Error>(self) -> Result<Option<usize>, E> {
        let values = self.counter.values.get() + 1;
        self.counter.values.set(values);
        if values > self.counter.max {
            return Err(E::custom("too many values"));
        }
        Ok(None)
    }
}

impl<'de, 'c> DeserializeSeed<'de> for Count<'c> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'c> Visitor<'de> for Count<'c> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<usize>, E> {
        self.tick()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<usize>, E> {
        self.tick()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<usize>, E> {
        self.tick()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<usize>, E> {
        self.tick()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<usize>, E> {
        self.tick()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<usize>, E> {
        self.tick()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<usize>, A::Error> {
        self.tick::<A::Error>()?;
        let element = Count {
            counter: self.counter,
            top: false,
        };
        let mut length = 0;
        while seq.next_element_seed(element)?.is_some() {
            length += 1;
        }
        Ok(self.top.then_some(length))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<usize>, A::Error> {
        self.tick::<A::Error>()?;
        let member = Count {
            counter: self.counter,
            top: false,
        };
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(member)?;
        }
        Ok(None)
    }
}

/// The response body, written answer by answer, never longer than its limit (but for the
/// short errors that replace answers that did not fit).
struct Answer {
    body: Vec<u8>,
    limit: usize,
}

impl Answer {
    fn new(limit: usize) -> Answer {
        Answer {
            body: Vec::new(),
            limit,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.body.extend_from_slice(bytes);
    }

    /// Appends one answer, serialized in place; if it does not fit, an internal error with
    /// the same id instead.
    fn push(&mut self, id: Value, answer: &Value) {
        let mark = self.body.len();
        let room = self.limit.saturating_sub(mark);
        let fits = serde_json::to_writer(Capped::new(&mut self.body, room), answer).is_ok();
        if !fits {
            self.body.truncate(mark);
            let error = RpcError::with_data(
                RpcError::INTERNAL,
                format!("the answer would pass {} bytes", self.limit),
            );
            // A Value with string keys always serializes.
            let _ = serde_json::to_writer(&mut self.body, &error.to_json(id));
        }
    }
}

/// A writer that refuses to grow `out` by more than `room` bytes.
struct Capped<'a> {
    out: &'a mut Vec<u8>,
    room: usize,
}

impl<'a> Capped<'a> {
    fn new(out: &'a mut Vec<u8>, room: usize) -> Capped<'a> {
        Capped { out, room }
    }
}

impl io::Write for Capped<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if bytes.len() > self.room {
            return Err(io::Error::other("over the answer limit"));
        }
        self.room -= bytes.len();
        self.out.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Answers one call: its id and the answer, or `None` for a notification.
fn one(call: Value, counters: &Counters) -> Option<(Value, Value)> {
    let invalid = || {
        Some((
            Value::Null,
            RpcError::new(RpcError::INVALID_REQUEST).to_json(Value::Null),
        ))
    };
    let Value::Object(mut call) = call else {
        return invalid();
    };
    // An id must be a string, a number or null; a call without one is a notification.
    let id = match call.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id),
        Some(_) => return invalid(),
    };
    let params = call.remove("params");
    let valid = call.get("jsonrpc") == Some(&json!("2.0"))
        && matches!(params, None | Some(Value::Array(_) | Value::Object(_)));
    let (true, Some(Value::String(method))) = (valid, call.remove("method")) else {
        return invalid();
    };
    let result = dispatch(&method, params.unwrap_or(Value::Null), counters);
    let id = id?;
    Some(match result {
        Ok(result) => (
            id.clone(),
            json!({ "jsonrpc": "2.0", "result": result, "id": id }),
        ),
        Err(error) => (id.clone(), error.to_json(id)),
    })
}

fn dispatch(method: &str, params: Value, counters: &Counters) -> Result<Value, RpcError> {
    match method {
        "subtract" => {
            let (minuend, subtrahend) = two(&params, "minuend", "subtrahend")?;
            arithmetic(minuend, subtrahend, i64::checked_sub, |a, b| a - b)
        }
        "add" => {
            let (a, b) = two(&params, "a", "b")?;
            arithmetic(a, b, i64::checked_add, |a, b| a + b)
        }
        "sum" => {
            let Value::Array(numbers) = params else {
                return Err(RpcError::with_data(
                    RpcError::INVALID_PARAMS,
                    "sum takes positional numbers",
                ));
            };
            numbers.iter().try_fold(json!(0), |total, n| {
                arithmetic(&total, n, i64::checked_add, |a, b| a + b)
            })
        }
        "echo" => Ok(params),
        "get_data" => Ok(json!(["hello", 5])),
        "update" | "notify_hello" | "notify_sum" => {
            counters.notifications.fetch_add(1, Ordering::SeqCst);
            Ok(Value::Null)
        }
        "notifications" => Ok(json!(counters.notifications.load(Ordering::SeqCst))),
        _ => Err(RpcError::new(RpcError::METHOD_NOT_FOUND)),
    }
}

/// Two parameters, by position or by name.
fn two<'a>(
    params: &'a Value,
    first: &str,
    second: &str,
) -> Result<(&'a Value, &'a Value), RpcError> {
    let pair = match params {
        Value::Array(list) if list.len() == 2 => list.first().zip(list.get(1)),
        Value::Object(named) if named.len() == 2 => named.get(first).zip(named.get(second)),
        _ => None,
    };
    pair.ok_or_else(|| {
        RpcError::with_data(
            RpcError::INVALID_PARAMS,
            format!("expected [{first}, {second}] or {{\"{first}\": .., \"{second}\": ..}}"),
        )
    })
}

/// Integer arithmetic when both are integers (an overflow is an internal error: the result
/// cannot be represented), floating point otherwise.
fn arithmetic(
    a: &Value,
    b: &Value,
    int: fn(i64, i64) -> Option<i64>,
    float: fn(f64, f64) -> f64,
) -> Result<Value, RpcError> {
    let not_numbers = || RpcError::with_data(RpcError::INVALID_PARAMS, "expected numbers");
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return int(x, y)
            .map(Value::from)
            .ok_or_else(|| RpcError::with_data(RpcError::INTERNAL, "integer overflow"));
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => Ok(json!(float(x, y))),
        _ => Err(not_numbers()),
    }
}
