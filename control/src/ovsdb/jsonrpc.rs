//! JSON-RPC 1.0 messages as OVSDB uses them (RFC 7047 §4).

use serde_json::{json, Value};
use std::fmt;

/// One message on an OVSDB connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call that wants an answer with the same `id`.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// A call with a null `id`: no answer (`update`, `cancel`, …).
    Notification { method: String, params: Value },
    /// A successful answer.
    Reply { id: Value, result: Value },
    /// A failed answer.
    Error { id: Value, error: Value },
}

/// A JSON value that is not a JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageError(pub String);

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a JSON-RPC message: {}", self.0)
    }
}

impl std::error::Error for MessageError {}

impl Message {
    pub fn from_json(value: Value) -> Result<Message, MessageError> {
        let Value::Object(mut obj) = value else {
            return Err(MessageError("not an object".into()));
        };
        let id = obj.remove("id").unwrap_or(Value::Null);
        if let Some(method) = obj.remove("method") {
            let Value::String(method) = method else {
                return Err(MessageError("\"method\" is not a string".into()));
            };
            let params = obj.remove("params").unwrap_or(Value::Null);
            if !params.is_array() {
                return Err(MessageError(format!(
                    "params of {method:?} is not an array"
                )));
            }
            return Ok(if id.is_null() {
                Message::Notification { method, params }
            } else {
                Message::Request { id, method, params }
            });
        }
        if id.is_null() {
            return Err(MessageError("neither a method nor an id".into()));
        }
        match (obj.remove("result"), obj.remove("error")) {
            (_, Some(error)) if !error.is_null() => Ok(Message::Error { id, error }),
            (Some(result), _) => Ok(Message::Reply { id, result }),
            _ => Err(MessageError("a reply with neither result nor error".into())),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Message::Request { id, method, params } => {
                json!({"id": id, "method": method, "params": params})
            }
            Message::Notification { method, params } => {
                json!({"id": null, "method": method, "params": params})
            }
            Message::Reply { id, result } => json!({"id": id, "result": result, "error": null}),
            Message::Error { id, error } => json!({"id": id, "result": null, "error": error}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        let m = |v: Value| Message::from_json(v);
        assert!(matches!(
            m(json!({"id": "echo", "method": "echo", "params": []})),
            Ok(Message::Request { .. })
        ));
        assert!(matches!(
            m(json!({"id": null, "method": "update2", "params": ["sb", {}]})),
            Ok(Message::Notification { .. })
        ));
        assert!(matches!(
            m(json!({"id": 3, "result": {}, "error": null})),
            Ok(Message::Reply { .. })
        ));
        assert!(matches!(
            m(json!({"id": 3, "result": null, "error": {"error": "unknown method"}})),
            Ok(Message::Error { .. })
        ));
        for bad in [
            json!([1]),
            json!({"id": null}),
            json!({"id": 1}),
            json!({"method": 5, "params": []}),
            json!({"method": "x", "params": {}}),
        ] {
            assert!(m(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips() {
        for msg in [
            Message::Request {
                id: json!(1),
                method: "echo".into(),
                params: json!([]),
            },
            Message::Notification {
                method: "cancel".into(),
                params: json!([1]),
            },
            Message::Reply {
                id: json!("x"),
                result: json!([1]),
            },
            Message::Error {
                id: json!(2),
                error: json!("canceled"),
            },
        ] {
            assert_eq!(Message::from_json(msg.to_json()).unwrap(), msg);
        }
    }
}
