//! The `v5.channel.k8s.io` WebSocket protocol of exec: each binary message is a channel byte
//! and its data; the error channel carries the final `Status`, 255 closes a channel.

use serde_json::{Value, json};

/// The only exec protocol served (kubectl 1.30+ asks for it first).
pub const PROTOCOL: &str = "v5.channel.k8s.io";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// A message from the client.
#[derive(Debug, PartialEq)]
pub enum Incoming<'a> {
    Stdin(&'a [u8]),
    Resize {
        width: u16,
        height: u16,
    },
    /// The client sends nothing more on the channel (for stdin: end of input).
    Close(u8),
    /// Empty, or on a channel clients do not write.
    Ignored,
}

/// Decodes one binary message.
pub fn decode(message: &[u8]) -> Incoming<'_> {
    match message {
        [STDIN, data @ ..] => Incoming::Stdin(data),
        [RESIZE, size @ ..] => {
            let size: Value = serde_json::from_slice(size).unwrap_or(Value::Null);
            let dimension = |name: &str| {
                size.get(name)
                    .and_then(Value::as_u64)
                    .and_then(|v| u16::try_from(v).ok())
            };
            match (dimension("Width"), dimension("Height")) {
                (Some(width), Some(height)) => Incoming::Resize { width, height },
                _ => Incoming::Ignored,
            }
        }
        [CLOSE, channel, ..] => Incoming::Close(*channel),
        _ => Incoming::Ignored,
    }
}

/// A message carrying `data` on `channel`.
pub fn encode(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(channel);
    message.extend_from_slice(data);
    message
}

/// The final status of a command that ran: success, or its exit code as kubectl reads it
/// (kubectl exits with that code).
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The final status of a command that could not run.
pub fn failure(message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message,
        "reason": "InternalError", "code": 500})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_decode_by_channel() {
        assert_eq!(decode(b"\x00hi\n"), Incoming::Stdin(b"hi\n"));
        let mut resize = vec![RESIZE];
        resize.extend_from_slice(br#"{"Width":120,"Height":40}"#);
        assert_eq!(
            decode(&resize),
            Incoming::Resize {
                width: 120,
                height: 40
            }
        );
        assert_eq!(decode(&[CLOSE, STDIN]), Incoming::Close(STDIN));
        assert_eq!(decode(&[RESIZE, b'x']), Incoming::Ignored);
        assert_eq!(decode(&[]), Incoming::Ignored);
        assert_eq!(encode(STDOUT, b"out"), b"\x01out".to_vec());
    }

    #[test]
    fn exit_codes_become_statuses_kubectl_understands() {
        assert_eq!(exit_status(&["true".into()], 0)["status"], "Success");
        let status = exit_status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(
            status["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.contains("[sh -c exit 3]"))
        );
        assert_eq!(failure("no such file")["status"], "Failure");
    }
}
