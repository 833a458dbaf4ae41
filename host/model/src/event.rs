//! The type of a core Event, shared by the host's event recorder and the plugins' `emit-event`.

/// `Normal` or `Warning`, as `kubectl describe` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}
