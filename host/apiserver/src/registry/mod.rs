//! The write path under the HTTP layer: strategies, admission (Pod Security included), allocators, create/update/delete/bind, server-side apply, graceful deletion and events.
//!
//! The HTTP handlers, the native controllers, the plugin host and the scheduler all write
//! through here; nothing here knows about requests or responses.

mod admission;
mod allocator;
mod apply;
mod bind;
mod delete;
pub mod events;
mod grace;
mod patch;
mod podsecurity;
mod service_account;
mod strategy;
mod write;

pub use apply::{Applied, server_side_apply};
pub use bind::bind_pod;
pub use delete::{DeleteOptions, delete_object, remove_finalizer};
pub use grace::marked_without_grace;
pub use patch::apply_patch;
pub use podsecurity::Level as PodSecurityLevel;
pub use write::{Update, WriteOptions, create_object, replace_status, update_with};
