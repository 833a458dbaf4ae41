//! The user a request is made by, as Kubernetes' `user.Info`: a name, a uid, groups and extra values.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Every member is allowed everything, whatever RBAC says (kubeadm's admin.conf is in it).
pub const MASTERS: &str = "system:masters";
/// Added to every authenticated user.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Every ServiceAccount is in it, and in `system:serviceaccounts:NS`.
pub const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
/// The identity of the admin bearer token (`pki/token`), in [`MASTERS`]: node agents use it
/// until they have identities of their own.
pub const TOKEN_USER: &str = "system:admin";

/// An authenticated user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// `name` in `groups`, and in [`AUTHENTICATED`].
    pub fn new(name: &str, groups: impl IntoIterator<Item = String>) -> User {
        let mut groups: Vec<String> = groups.into_iter().collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        User {
            name: name.to_string(),
            groups,
            ..User::default()
        }
    }

    /// The ServiceAccount `ns/name` as a user, in its groups (as its tokens authenticate it).
    pub fn service_account(ns: &str, name: &str) -> User {
        User::new(
            &format!("system:serviceaccount:{ns}:{name}"),
            [
                SERVICE_ACCOUNTS.to_string(),
                format!("{SERVICE_ACCOUNTS}:{ns}"),
            ],
        )
    }

    /// The user of the admin token.
    pub fn token_admin() -> User {
        User::new(TOKEN_USER, [MASTERS.to_string()])
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// `userInfo` as a SelfSubjectReview's status shows it.
    pub fn to_json(&self) -> Value {
        let mut info = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            info["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            info["extra"] = json!(self.extra);
        }
        info
    }
}
