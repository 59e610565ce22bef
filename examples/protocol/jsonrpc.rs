//! JSON-RPC 2.0 decoding and dispatch for the `jsonrpc` example, in a module of its own so
//! that the fuzz target `fuzz/fuzz_targets/jsonrpc.rs` runs this very code (both include it
//! with `#[path]`). See `examples/jsonrpc.rs` for what the protocol rules are.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

/// State shared by every request: how many notifications have run.
#[derive(Default)]
pub struct Counters {
    notifications: AtomicU64,
}

/// A JSON-RPC error object, by the specification's code.
struct RpcError {
    code: i64,
    data: Option<Value>,
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

    fn with_data(code: i64, data: &str) -> RpcError {
        RpcError {
            code,
            data: Some(json!(data)),
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
            object.insert("data".into(), data.clone());
        }
        json!({ "jsonrpc": "2.0", "error": error, "id": id })
    }
}

/// Answers a POST body: `None` when nothing is to be sent back (notifications only).
pub fn rpc(body: &[u8], counters: &Counters) -> Option<Value> {
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return Some(RpcError::new(RpcError::PARSE).to_json(Value::Null));
    };
    match message {
        Value::Array(batch) if batch.is_empty() => {
            Some(RpcError::new(RpcError::INVALID_REQUEST).to_json(Value::Null))
        }
        Value::Array(batch) => {
            let answers: Vec<Value> = batch
                .into_iter()
                .filter_map(|call| one(call, counters))
                .collect();
            (!answers.is_empty()).then_some(Value::Array(answers))
        }
        call => one(call, counters),
    }
}

/// Answers one call: `None` for a notification.
fn one(call: Value, counters: &Counters) -> Option<Value> {
    let invalid = || Some(RpcError::new(RpcError::INVALID_REQUEST).to_json(Value::Null));
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
        Ok(result) => json!({ "jsonrpc": "2.0", "result": result, "id": id }),
        Err(error) => error.to_json(id),
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
            &format!("expected [{first}, {second}] or {{\"{first}\": .., \"{second}\": ..}}"),
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
