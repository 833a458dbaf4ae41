//! An image's users and groups (its `/etc/passwd` and `/etc/group`) and a `USER` resolved
//! through them, as containerd's `oci.WithUser` and `WithAdditionalGIDs` do.

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AccountsError {
    /// The wording of runc's `user` package, which containerd and Docker report.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("invalid user {0:?}: expected user[:group], each a name or a number below 2^32")]
    Invalid(String),
}

/// A line of `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

/// A line of `/etc/group`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The users and groups an image defines; empty when it has no such files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts {
    users: Vec<Passwd>,
    groups: Vec<Group>,
}

/// Who a container's process runs as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// The primary group first, then the groups listing the user as a member.
    pub additional_gids: Vec<u32>,
}

/// A user or group as written in `USER`: a number, or a name to look up.
enum Id<'a> {
    Number(u32),
    Name(&'a str),
}

impl<'a> Id<'a> {
    fn parse(text: &'a str, whole: &str) -> Result<Id<'a>, AccountsError> {
        if text.is_empty() {
            return Err(AccountsError::Invalid(whole.to_string()));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            let number = text
                .parse()
                .map_err(|_| AccountsError::Invalid(whole.to_string()))?;
            return Ok(Id::Number(number));
        }
        Ok(Id::Name(text))
    }
}

/// The colon-separated fields of each line that is not blank or a comment.
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split(':').collect())
}

impl Accounts {
    /// Parses the two files' texts; malformed lines are skipped, as by runc's parser.
    pub fn parse(passwd: &str, group: &str) -> Accounts {
        let users = records(passwd)
            .filter_map(|fields| {
                Some(Passwd {
                    name: fields.first()?.to_string(),
                    uid: fields.get(2)?.parse().ok()?,
                    gid: fields.get(3)?.parse().ok()?,
                })
            })
            .collect();
        let groups = records(group)
            .filter_map(|fields| {
                let members = fields.get(3).copied().unwrap_or_default();
                Some(Group {
                    name: fields.first()?.to_string(),
                    gid: fields.get(2)?.parse().ok()?,
                    members: members
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect(),
                })
            })
            .collect();
        Accounts { users, groups }
    }

    /// Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`, `name:gid`, `uid:group`; empty
    /// is root): a name must be found, a bare uid takes its primary group from `/etc/passwd`
    /// (0 when it is not there), and the groups that list the user become additional ones.
    pub fn resolve(&self, user: &str) -> Result<User, AccountsError> {
        let (user_part, group_part) = match user.split_once(':') {
            None if user.is_empty() => ("0", None),
            None => (user, None),
            Some((_, group)) if group.contains(':') => {
                return Err(AccountsError::Invalid(user.to_string()));
            }
            Some((u, g)) => (u, Some(g)),
        };
        let entry = match Id::parse(user_part, user)? {
            Id::Number(uid) => self.users.iter().find(|u| u.uid == uid).map_or(
                Passwd {
                    name: String::new(),
                    uid,
                    gid: 0,
                },
                Passwd::clone,
            ),
            Id::Name(name) => self
                .users
                .iter()
                .find(|u| u.name == name)
                .cloned()
                .ok_or_else(|| AccountsError::NoUser(name.to_string()))?,
        };
        let gid = match group_part.map(|g| Id::parse(g, user)).transpose()? {
            None => entry.gid,
            Some(Id::Number(gid)) => gid,
            Some(Id::Name(name)) => self
                .groups
                .iter()
                .find(|g| g.name == name)
                .map(|g| g.gid)
                .ok_or_else(|| AccountsError::NoGroup(name.to_string()))?,
        };
        Ok(User {
            uid: entry.uid,
            gid,
            additional_gids: self.additional_gids(&entry.name, gid),
        })
    }

    /// `gid`, then the groups whose member list names `user` (containerd's
    /// `WithAdditionalGIDs`, with the primary group kept first since CVE-2023-25173).
    fn additional_gids(&self, user: &str, gid: u32) -> Vec<u32> {
        let mut gids = vec![gid];
        if user.is_empty() {
            return gids;
        }
        let member = self
            .groups
            .iter()
            .filter(|g| g.name != user && g.members.iter().any(|m| m == user));
        for group in member {
            if !gids.contains(&group.gid) {
                gids.push(group.gid);
            }
        }
        gids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        app:x:1000:1000::/home/app:/bin/sh\n\
        broken:x:notanumber:1\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root,app\napp:x:1000:app\n\
        audio:x:29:app\nnogroup:x:65534:\n";

    fn resolve(user: &str) -> Result<User, AccountsError> {
        Accounts::parse(PASSWD, GROUP).resolve(user)
    }

    fn user(uid: u32, gid: u32, additional_gids: &[u32]) -> Result<User, AccountsError> {
        Ok(User {
            uid,
            gid,
            additional_gids: additional_gids.to_vec(),
        })
    }

    #[test]
    fn names_resolve_through_the_image_files() {
        assert_eq!(resolve("app"), user(1000, 1000, &[1000, 10, 29]));
        assert_eq!(resolve("app:nogroup"), user(1000, 65534, &[65534, 10, 29]));
        assert_eq!(resolve("app:7"), user(1000, 7, &[7, 10, 29]));
        assert_eq!(resolve("1000:audio"), user(1000, 29, &[29, 10]));
        assert_eq!(resolve("root"), user(0, 0, &[0, 10]));
        assert_eq!(resolve(""), user(0, 0, &[0, 10]));
    }

    #[test]
    fn numbers_need_no_entry() {
        assert_eq!(resolve("1000"), user(1000, 1000, &[1000, 10, 29]));
        assert_eq!(resolve("4242"), user(4242, 0, &[0]));
        assert_eq!(resolve("4242:4343"), user(4242, 4343, &[4343]));
        let empty = Accounts::default();
        assert_eq!(empty.resolve("0"), user(0, 0, &[0]));
    }

    #[test]
    fn unknown_names_and_malformed_users_are_refused_never_root() {
        assert_eq!(
            resolve("nosuchuser"),
            Err(AccountsError::NoUser("nosuchuser".into()))
        );
        assert_eq!(
            resolve("app:nosuchgroup"),
            Err(AccountsError::NoGroup("nosuchgroup".into()))
        );
        assert_eq!(
            Accounts::default().resolve("root"),
            Err(AccountsError::NoUser("root".into()))
        );
        assert_eq!(
            resolve("broken"),
            Err(AccountsError::NoUser("broken".into()))
        );
        for bad in ["a:b:c", ":", "app:", ":0", "4294967296", "1:99999999999"] {
            assert_eq!(
                resolve(bad),
                Err(AccountsError::Invalid(bad.into())),
                "{bad}"
            );
        }
    }
}
