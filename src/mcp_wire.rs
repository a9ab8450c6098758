//! A line-level JSON-RPC 2.0 guard in front of the MCP SDK (rmcp) on stdio. rmcp answers well
//! formed traffic; what it does not answer the way JSON-RPC 2.0 requires, this answers first:
//! - a line that is not JSON: -32700 with `id: null`;
//! - JSON that is not a request, notification or response: -32600, with the request's `id`
//!   when it has a usable one (else `null`), so every error reply carries an `id`;
//! - `tools/call` whose `arguments` are not an object, or lack a field the tool requires: -32602;
//! - before `initialize`: notifications are dropped, `ping` is answered, any other request gets
//!   -32002 "not initialized" (rmcp would end the session on either);
//! - a request sent before the client's `notifications/initialized` is preceded by one, since
//!   rmcp ends the session on anything else in that place.
//!
//! `Guard` is pure (line in, decision out), so it is unit-tested and fuzzed without I/O.

use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// JSON-RPC 2.0 error codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INVALID_PARAMS: i64 = -32602;
/// As LSP names it; MCP leaves the code to the server.
pub const NOT_INITIALIZED: i64 = -32002;
/// One message per line; a longer one is refused (and its bytes skipped), not buffered.
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// What to do with one line from the client.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Pass these lines to rmcp, in order.
    Forward(Vec<String>),
    /// Answer the client with this line; rmcp never sees the input.
    Reply(String),
    /// A notification nothing should answer.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// No `initialize` yet.
    New,
    /// `initialize` forwarded, `notifications/initialized` not yet.
    Initializing,
    Ready,
}

/// The session state the guard needs: the phase and which arguments each tool requires.
#[derive(Debug)]
pub struct Guard {
    phase: Phase,
    required: HashMap<String, Vec<String>>,
}

impl Guard {
    /// `required`: tool name → argument names its input schema requires.
    pub fn new(required: HashMap<String, Vec<String>>) -> Self {
        Self { phase: Phase::New, required }
    }

    pub fn line(&mut self, line: &[u8]) -> Decision {
        match self.decide(line) {
            Decision::Reply(reply) => Decision::Reply(with_the_clients_id(line, reply)),
            other => other,
        }
    }

    fn decide(&mut self, line: &[u8]) -> Decision {
        let Ok(text) = std::str::from_utf8(line) else {
            return Decision::Reply(error(Value::Null, PARSE_ERROR, "Parse error: the line is not UTF-8"));
        };
        let text = text.trim();
        if text.is_empty() {
            return Decision::Drop;
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return Decision::Reply(error(Value::Null, PARSE_ERROR, &format!("Parse error: {e}"))),
        };
        let msg = match value {
            Value::Object(msg) => msg,
            Value::Array(items) if !items.is_empty() => return batch(&items),
            _ => {
                return Decision::Reply(error(
                    Value::Null,
                    INVALID_REQUEST,
                    "Invalid Request: a message is one JSON object",
                ));
            }
        };
        let id = msg.get("id").filter(|id| matches!(id, Value::String(_) | Value::Number(_))).cloned();
        if msg.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return invalid(id, "\"jsonrpc\" must be \"2.0\"");
        }
        if msg.contains_key("id") && id.is_none() {
            return invalid(None, "\"id\" must be a string or a number (null is no id)");
        }
        match (msg.get("method"), id) {
            (Some(Value::String(method)), Some(id)) => self.request(method, id, &msg, text),
            (Some(Value::String(method)), None) if !msg.contains_key("id") => self.notification(method, text),
            (Some(_), id) => invalid(id, "\"method\" must be a string"),
            (None, Some(_)) if msg.contains_key("result") || msg.contains_key("error") => {
                // A response to a request of ours: only a session rmcp runs can expect one.
                if self.phase == Phase::Ready && rmcp_reads(text) {
                    Decision::Forward(vec![text.to_string()])
                } else {
                    Decision::Drop
                }
            }
            (None, id) => invalid(id, "a request needs a \"method\""),
        }
    }

    fn request(&mut self, method: &str, id: Value, msg: &Map<String, Value>, text: &str) -> Decision {
        match (self.phase, method) {
            (Phase::New, "initialize") => match initialize_params_error(msg.get("params")) {
                Some(why) => Decision::Reply(error(id, INVALID_PARAMS, &format!("Invalid params: {why}"))),
                None if let Some((code, why)) = crate::mcp_shape::rmcp_refusal(method, msg, text) => {
                    Decision::Reply(error(id, code, &why))
                }
                None => {
                    self.phase = Phase::Initializing;
                    Decision::Forward(vec![text.to_string()])
                }
            },
            (Phase::New, "ping") => Decision::Reply(json!({"jsonrpc": "2.0", "id": id, "result": {}}).to_string()),
            (Phase::New, _) => Decision::Reply(error(
                id,
                NOT_INITIALIZED,
                "the server is not initialized: send `initialize` first, then `notifications/initialized`",
            )),
            (_, "initialize") => Decision::Reply(error(id, INVALID_REQUEST, "Invalid Request: already initialized")),
            (phase, _) => {
                if method == "tools/call"
                    && let Some(why) = self.tool_call_error(msg.get("params"))
                {
                    return Decision::Reply(error(id, INVALID_PARAMS, &format!("Invalid params: {why}")));
                }
                if let Some((code, why)) = crate::mcp_shape::rmcp_refusal(method, msg, text) {
                    return Decision::Reply(error(id, code, &why));
                }
                let mut lines = Vec::new();
                if phase == Phase::Initializing {
                    lines.push(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string());
                    self.phase = Phase::Ready;
                }
                lines.push(text.to_string());
                Decision::Forward(lines)
            }
        }
    }

    fn notification(&mut self, method: &str, text: &str) -> Decision {
        match (self.phase, method) {
            (Phase::New, _) => Decision::Drop,
            (Phase::Initializing, "notifications/initialized") => {
                self.phase = Phase::Ready;
                Decision::Forward(vec![text.to_string()])
            }
            (Phase::Initializing, _) => Decision::Drop,
            (Phase::Ready, "notifications/initialized") => Decision::Drop,
            // One rmcp cannot read would be answered, and notifications get no answer.
            (Phase::Ready, _) if !rmcp_reads(text) => Decision::Drop,
            (Phase::Ready, _) => Decision::Forward(vec![text.to_string()]),
        }
    }

    /// Why `tools/call` params are invalid, if they are.
    fn tool_call_error(&self, params: Option<&Value>) -> Option<String> {
        let Some(Value::Object(params)) = params else {
            return Some("tools/call needs params {\"name\": …, \"arguments\": {…}}".into());
        };
        let Some(Value::String(name)) = params.get("name") else {
            return Some("tools/call needs a tool \"name\" (a string)".into());
        };
        let empty = Map::new();
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(a)) => a,
            Some(_) => return Some(format!("the arguments of `{name}` must be an object")),
        };
        let missing: Vec<&str> = self
            .required
            .get(name)
            .into_iter()
            .flatten()
            .filter(|field| arguments.get(field.as_str()).is_none_or(Value::is_null))
            .map(String::as_str)
            .collect();
        (!missing.is_empty()).then(|| format!("`{name}` needs the argument(s) {}", missing.join(", ")))
    }
}

/// The fields MCP requires of `initialize` params.
fn initialize_params_error(params: Option<&Value>) -> Option<&'static str> {
    let Some(Value::Object(p)) = params else { return Some("initialize needs params") };
    if !p.get("protocolVersion").is_some_and(Value::is_string) {
        return Some("initialize needs \"protocolVersion\" (a string)");
    }
    if !p.get("capabilities").is_some_and(Value::is_object) {
        return Some("initialize needs \"capabilities\" (an object)");
    }
    let info = p.get("clientInfo").and_then(Value::as_object);
    if !info
        .is_some_and(|i| i.get("name").is_some_and(Value::is_string) && i.get("version").is_some_and(Value::is_string))
    {
        return Some("initialize needs \"clientInfo\" with \"name\" and \"version\" (strings)");
    }
    None
}

/// Serves stdio through the guard: client lines go through `Guard`, forwarded ones reach rmcp
/// over `to_rmcp`; rmcp's lines (read from `from_rmcp`) and the guard's replies share one writer,
/// so whole lines never interleave. Returns when stdin ends (rmcp then sees its input end).
pub async fn pump(
    mut guard: Guard,
    mut to_rmcp: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
    from_rmcp: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let rmcp_lines = tx.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(from_rmcp).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if rmcp_lines.send(line).is_err() {
                break;
            }
        }
    });
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = rx.recv().await {
            let written = stdout.write_all(format!("{line}\n").as_bytes()).await;
            // A client that closed its end reads nothing more; the session ends with its input.
            if written.and(stdout.flush().await).is_err() {
                break;
            }
        }
    });
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    while let Ok(Some(whole)) = read_line(&mut stdin, &mut buf).await {
        let decision = if whole {
            guard.line(&buf)
        } else {
            Decision::Reply(error(Value::Null, INVALID_REQUEST, "Invalid Request: a message longer than 8 MiB"))
        };
        match decision {
            Decision::Forward(lines) => {
                for line in lines {
                    if to_rmcp.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
            Decision::Reply(line) => {
                let _ = tx.send(line);
            }
            Decision::Drop => {}
        }
    }
    let _ = to_rmcp.shutdown().await;
    drop(tx);
    // Every reply is written before the session ends (rmcp's side closes when it stops).
    let _ = writer.await;
}

/// One line into `buf` (without reading more than `MAX_LINE_BYTES` of it): `Some(true)` for a
/// line, `Some(false)` for one too long (skipped to its end), `None` at the end of input.
async fn read_line(r: &mut (impl tokio::io::AsyncBufRead + Unpin), buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    buf.clear();
    let n = (&mut *r).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') || buf.len() <= MAX_LINE_BYTES {
        return Ok(Some(true));
    }
    loop {
        let mut skipped = Vec::new();
        let n = (&mut *r).take(64 * 1024).read_until(b'\n', &mut skipped).await?;
        if n == 0 || skipped.last() == Some(&b'\n') {
            return Ok(Some(false));
        }
    }
}

/// serde_json reads a number id beyond 64 bits as a float (`18446744073709551616` as
/// `1.8446744073709552e19`): the reply carries the id as the client wrote it.
fn with_the_clients_id(line: &[u8], reply: String) -> String {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
    }
    let Some(raw) = serde_json::from_slice::<Raw>(line).ok().and_then(|r| r.id).map(|r| r.get()) else {
        return reply;
    };
    let Ok(Value::Number(n)) = serde_json::from_str::<Value>(raw) else { return reply };
    if !n.is_f64() {
        return reply;
    }
    match serde_json::from_str::<Value>(&reply) {
        Ok(Value::Object(mut fields)) if fields.contains_key("id") => {
            fields.remove("id");
            let rest = Value::Object(fields).to_string();
            format!("{{\"id\":{raw},{}", &rest[1..])
        }
        _ => reply,
    }
}

/// Whether rmcp reads this line as a message (it answers one it cannot read without an `id`).
fn rmcp_reads(text: &str) -> bool {
    serde_json::from_str::<rmcp::model::ClientJsonRpcMessage>(text).is_ok()
}

/// A batch: fleet answers one message per line (as MCP since 2025-06-18), so each request in it
/// gets its own -32600 with its id, in one array as JSON-RPC 2.0 answers a batch; a batch of
/// notifications gets nothing.
fn batch(items: &[Value]) -> Decision {
    let replies: Vec<Value> = items
        .iter()
        .filter(|item| !item.as_object().is_some_and(|m| !m.contains_key("id") && m.contains_key("method")))
        .map(|item| {
            let id = item.get("id").filter(|id| id.is_string() || id.is_number()).cloned().unwrap_or(Value::Null);
            let why = "Invalid Request: batches are not supported; send one message per line";
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": INVALID_REQUEST, "message": why}})
        })
        .collect();
    if replies.is_empty() { Decision::Drop } else { Decision::Reply(Value::Array(replies).to_string()) }
}

fn invalid(id: Option<Value>, why: &str) -> Decision {
    Decision::Reply(error(id.unwrap_or(Value::Null), INVALID_REQUEST, &format!("Invalid Request: {why}")))
}

fn error(id: Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    const INITED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

    fn guard() -> Guard {
        Guard::new(HashMap::from([("plan".to_string(), vec!["stage".to_string(), "action".to_string()])]))
    }

    fn ready() -> Guard {
        let mut g = guard();
        assert!(matches!(g.line(INIT.as_bytes()), Decision::Forward(_)));
        assert!(matches!(g.line(INITED.as_bytes()), Decision::Forward(_)));
        g
    }

    fn reply(d: Decision) -> Value {
        match d {
            Decision::Reply(line) => serde_json::from_str(&line).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn not_json_is_a_parse_error_with_id_null() {
        let r = reply(ready().line(b"hello"));
        assert_eq!((r["id"].clone(), r["error"]["code"].clone()), (Value::Null, json!(PARSE_ERROR)));
        assert_eq!(reply(ready().line(b"\xff\xfe"))["error"]["code"], PARSE_ERROR);
    }

    #[test]
    fn invalid_requests_keep_their_id() {
        let mut g = ready();
        for (line, id) in [
            (r#"{"jsonrpc":"2.0","id":7}"#, json!(7)),
            (r#"{"id":"x","method":"tools/list"}"#, json!("x")),
            (r#"{"jsonrpc":"2.0","id":8,"method":5}"#, json!(8)),
            ("[]", Value::Null),
            ("5", Value::Null),
            (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#, Value::Null),
        ] {
            let r = reply(g.line(line.as_bytes()));
            assert_eq!(r["id"], id, "{line}");
            assert_eq!(r["error"]["code"], INVALID_REQUEST, "{line}");
        }
    }

    #[test]
    fn tool_arguments_must_be_an_object_with_the_required_fields() {
        let mut g = ready();
        for line in [
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"plan"}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"plan","arguments":5}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"validate","arguments":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"plan","arguments":{"stage":"dev"}}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"plan","arguments":{"stage":null,"action":"up"}}}"#,
        ] {
            let r = reply(g.line(line.as_bytes()));
            assert_eq!((r["id"].clone(), r["error"]["code"].clone()), (json!(3), json!(INVALID_PARAMS)), "{line}");
        }
        let ok = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"validate"}}"#;
        assert_eq!(g.line(ok.as_bytes()), Decision::Forward(vec![ok.to_string()]));
    }

    #[test]
    fn before_initialize_notifications_are_dropped_and_requests_answered() {
        let mut g = guard();
        assert_eq!(g.line(INITED.as_bytes()), Decision::Drop);
        let r = reply(g.line(br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#));
        assert_eq!((r["id"].clone(), r["error"]["code"].clone()), (json!(2), json!(NOT_INITIALIZED)));
        assert_eq!(reply(g.line(br#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#))["result"], json!({}));
        let bad_init = r#"{"jsonrpc":"2.0","id":4,"method":"initialize","params":{}}"#;
        assert_eq!(reply(g.line(bad_init.as_bytes()))["error"]["code"], INVALID_PARAMS);
        assert!(matches!(g.line(INIT.as_bytes()), Decision::Forward(_)));
        // A request before `notifications/initialized` gets one sent ahead of it.
        let list = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
        assert_eq!(g.line(list.as_bytes()), Decision::Forward(vec![INITED.to_string(), list.to_string()]));
        assert_eq!(g.line(INITED.as_bytes()), Decision::Drop, "not twice");
    }

    #[test]
    fn lines_rmcp_would_not_read_are_answered_here_with_their_id() {
        let mut g = ready();
        for (line, id, code) in [
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, json!(1.5), INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":9223372036854775808,"method":"ping"}"#,
                json!(9223372036854775808u64),
                INVALID_REQUEST,
            ),
            (r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":[1,2]}"#, json!(2), INVALID_PARAMS),
            (r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":{"_meta":5}}"#, json!(3), INVALID_PARAMS),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"validate","_meta":[]}}"#,
                json!(4),
                INVALID_PARAMS,
            ),
            (r#"{"jsonrpc":"2.0","id":5,"method":"ping","id":6}"#, json!(6), INVALID_REQUEST),
        ] {
            let r = reply(g.line(line.as_bytes()));
            assert_eq!((r["id"].clone(), r["error"]["code"].clone()), (id, json!(code)), "{line} → {r}");
        }
        // An id beyond 64 bits comes back as the client wrote it, not as a float.
        let Decision::Reply(big) = g.line(br#"{"jsonrpc":"2.0","id":18446744073709551616000,"method":"ping"}"#) else {
            panic!("a reply")
        };
        assert!(big.contains(r#""id":18446744073709551616000,"#), "{big}");
        let mut fresh = guard();
        let Decision::Reply(pong) = fresh.line(br#"{"jsonrpc":"2.0","id":18446744073709551616000,"method":"ping"}"#)
        else {
            panic!("a reply")
        };
        assert!(pong.contains(r#""id":18446744073709551616000,"#), "a result too: {pong}");
        assert_eq!(serde_json::from_str::<Value>(&pong).unwrap()["result"], json!({}));
        // A notification rmcp cannot read gets no reply (and never reaches rmcp).
        assert_eq!(g.line(br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":[1]}"#), Decision::Drop);
        // An `initialize` whose params rmcp would read as an unknown method is refused, and the
        // session can still initialize.
        let mut g = guard();
        let bad = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"roots":5},"clientInfo":{"name":"t","version":"1"}}}"#;
        let r = reply(g.line(bad.as_bytes()));
        assert_eq!((r["id"].clone(), r["error"]["code"].clone()), (json!(1), json!(INVALID_PARAMS)), "{r}");
        assert!(matches!(g.line(INIT.as_bytes()), Decision::Forward(_)));
    }

    #[test]
    fn a_batch_gets_one_error_per_request_in_an_array() {
        let mut g = ready();
        let line = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"x"},5,{"jsonrpc":"2.0","id":"b","method":"tools/list"}]"#;
        let Decision::Reply(text) = g.line(line.as_bytes()) else { panic!("a reply") };
        let r: Value = serde_json::from_str(&text).unwrap();
        let ids: Vec<Value> = r.as_array().unwrap().iter().map(|e| e["id"].clone()).collect();
        assert_eq!(ids, vec![json!(1), Value::Null, json!("b")], "{text}");
        assert!(r.as_array().unwrap().iter().all(|e| e["error"]["code"] == INVALID_REQUEST), "{text}");
        assert_eq!(g.line(br#"[{"jsonrpc":"2.0","method":"x"}]"#), Decision::Drop, "notifications only");
        let r = reply(g.line(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#));
        assert!(r["error"]["message"].as_str().unwrap().contains("null"), "{r}");
    }

    /// Seeded fuzz over JSON-ish lines: every reply is a JSON-RPC 2.0 error object with an `id`.
    #[test]
    fn fuzzed_lines_get_conformant_replies() {
        let pieces = [
            "{",
            "}",
            "[",
            "]",
            "\"jsonrpc\"",
            ":",
            "\"2.0\"",
            ",",
            "\"id\"",
            "1",
            "null",
            "\"method\"",
            "\"tools/call\"",
            "\"params\"",
            "\"arguments\"",
            "\"name\"",
            "\"plan\"",
            "\"initialize\"",
            "é",
            " ",
            "\"",
            "5",
        ];
        let mut rng = fastrand::Rng::with_seed(0x22_08);
        for round in 0..4000 {
            let mut g = if round % 2 == 0 { guard() } else { ready() };
            let mut line = String::new();
            for _ in 0..rng.usize(1..30) {
                line.push_str(pieces[rng.usize(..pieces.len())]);
            }
            if let Decision::Reply(text) = g.line(line.as_bytes()) {
                let r: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(r["jsonrpc"], "2.0", "{line}");
                assert!(r.as_object().unwrap().contains_key("id"), "{line} → {text}");
                assert!(r["error"]["code"].is_i64() || r["result"].is_object(), "{line} → {text}");
            }
        }
    }
}
