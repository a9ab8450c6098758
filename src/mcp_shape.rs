//! What rmcp, the MCP SDK behind `fleet mcp`'s guard, would not read the way the client meant:
//! a line it cannot deserialize it answers with an error that has no `id` (JSON-RPC 2.0 requires
//! one), and a method it serves whose params do not fit its schema it reads as an unknown method
//! (for `initialize`, an error about `_meta` that ends the session). The guard asks here first and
//! answers such a request itself, with its id. rmcp's own types decide, so the two cannot differ.

use rmcp::model::{
    CallToolRequest, ClientJsonRpcMessage, ClientRequest, InitializeRequest, JsonRpcMessage, JsonRpcRequest,
    ListToolsRequest, PingRequest,
};
use serde_json::{Map, Value};

/// The methods fleet serves; others are answered by rmcp (-32601 for those it does not know).
const SERVED: [&str; 4] = ["initialize", "ping", "tools/list", "tools/call"];

/// The JSON-RPC error (code and message) for a request rmcp would not read as `method`.
pub fn rmcp_refusal(method: &str, msg: &Map<String, Value>, text: &str) -> Option<(i64, String)> {
    match serde_json::from_str::<ClientJsonRpcMessage>(text) {
        Ok(JsonRpcMessage::Request(r)) if matches!(r.request, ClientRequest::CustomRequest(_)) => SERVED
            .contains(&method)
            .then(|| (crate::mcp_wire::INVALID_PARAMS, format!("Invalid params: {}", typed_error(method, text)))),
        Ok(_) => None,
        Err(e) => {
            // Params are what is wrong when the request reads without them, and the text is not
            // at fault (a key given twice reads as a value but not as text).
            let reads =
                |m: Map<String, Value>| serde_json::from_value::<ClientJsonRpcMessage>(Value::Object(m)).is_ok();
            let mut bare = msg.clone();
            bare.remove("params");
            let id_fits = msg.get("id").is_some_and(|id| id.is_string() || id.is_i64());
            if !id_fits {
                let why = "Invalid Request: fleet takes a string id or an integer id of at most 64 bits";
                Some((crate::mcp_wire::INVALID_REQUEST, why.into()))
            } else if !reads(msg.clone()) && reads(bare) {
                let why = if SERVED.contains(&method) { typed_error(method, text) } else { e.to_string() };
                Some((crate::mcp_wire::INVALID_PARAMS, format!("Invalid params: {why}")))
            } else {
                Some((crate::mcp_wire::INVALID_REQUEST, format!("Invalid Request: {e}")))
            }
        }
    }
}

/// Why `text` is not a `method` request, in serde's words.
fn typed_error(method: &str, text: &str) -> String {
    let err = match method {
        "initialize" => serde_json::from_str::<JsonRpcRequest<InitializeRequest>>(text).err(),
        "tools/call" => serde_json::from_str::<JsonRpcRequest<CallToolRequest>>(text).err(),
        "tools/list" => serde_json::from_str::<JsonRpcRequest<ListToolsRequest>>(text).err(),
        "ping" => serde_json::from_str::<JsonRpcRequest<PingRequest>>(text).err(),
        _ => None,
    };
    match err {
        Some(e) => format!("the params of `{method}` do not fit its schema: {e}"),
        None => format!("the params of `{method}` do not fit its schema"),
    }
}
