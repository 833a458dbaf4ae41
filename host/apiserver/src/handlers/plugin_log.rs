//! `GET plugins/{name}/log`: a plugin's recent log lines as text, as `pods/log` serves a container's, optionally followed.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::stream::{self, Stream, StreamExt as _};
use http::{StatusCode, header};

use super::Call;
use crate::error::ApiError;
use crate::plugin_logs::{Batch, Follower, Line};

/// What the query asks for, checked.
#[derive(Debug, Default, PartialEq)]
struct LogOptions {
    follow: bool,
    timestamps: bool,
    /// The last lines only.
    tail: Option<usize>,
    /// Bytes to send before ending.
    limit: Option<usize>,
}

fn invalid(field: &str, value: &str, why: &str) -> ApiError {
    ApiError::BadRequest(format!("{field}: Invalid value: {value:?}: {why}"))
}

/// `true`/`false` as Go's `strconv.ParseBool` reads them.
fn boolean(field: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(invalid(field, value, "must be a boolean")),
    }
}

/// A count of at least `min`.
fn count(field: &str, value: &str, min: u64) -> Result<usize, ApiError> {
    let why = format!("must be an integer greater than or equal to {min}");
    let n: i64 = value.parse().map_err(|_| invalid(field, value, &why))?;
    u64::try_from(n)
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| invalid(field, value, &why))
        // Past what an address holds: as good as unbounded.
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

impl LogOptions {
    /// The options of `query`; other parameters are ignored, as `pods/log` ignores what does
    /// not apply.
    fn parse(query: &[(String, String)]) -> Result<LogOptions, ApiError> {
        let mut options = LogOptions::default();
        for (key, value) in query {
            match key.as_str() {
                "follow" => options.follow = boolean(key, value)?,
                "timestamps" => options.timestamps = boolean(key, value)?,
                "tailLines" => options.tail = Some(count(key, value, 0)?),
                "limitBytes" => options.limit = Some(count(key, value, 1)?),
                _ => {}
            }
        }
        Ok(options)
    }
}

/// Text still allowed by `limitBytes`.
struct Budget(Option<usize>);

impl Budget {
    /// `text`, cut to what is left; `None` once nothing is.
    fn take(&mut self, text: String) -> Option<Bytes> {
        let mut bytes = text.into_bytes();
        if let Some(left) = &mut self.0 {
            if *left == 0 {
                return None;
            }
            bytes.truncate(*left);
            *left -= bytes.len();
        }
        Some(Bytes::from(bytes))
    }

    fn spent(&self) -> bool {
        self.0 == Some(0)
    }
}

fn render(lines: &[Arc<Line>], timestamps: bool) -> String {
    lines.iter().map(|line| line.render(timestamps)).collect()
}

/// The lines a follower gets after the first ones, until the plugin goes, the client goes or
/// `limitBytes` is spent.
fn followed(
    follower: Follower,
    budget: Budget,
    timestamps: bool,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    stream::unfold(
        (follower, budget),
        move |(mut follower, mut budget)| async move {
            if budget.spent() {
                return None;
            }
            let Batch { missed, lines } = follower.next().await?;
            let mut text = String::new();
            if missed > 0 {
                text.push_str(&format!(
                    "({missed} lines not shown: written faster than they were read)\n"
                ));
            }
            text.push_str(&render(&lines, timestamps));
            let bytes = budget.take(text)?;
            Some((Ok(bytes), (follower, budget)))
        },
    )
}

/// `GET plugins/{name}/log` with `follow`, `timestamps`, `tailLines` and `limitBytes`: 404 for a
/// Plugin that does not exist, 400 naming the parameter for a bad value.
pub async fn get(call: &Call<'_>, query: &[(String, String)]) -> Result<Response, ApiError> {
    let options = LogOptions::parse(query)?;
    let Call { server, target, .. } = call;
    let name = target.name()?;
    server.objects.must_get(&target.info, None, name).await?;
    let ok = http::Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain");
    let mut budget = Budget(options.limit);
    let log = match options.follow {
        true => Some(server.plugin_logs.open(name)),
        // Nothing written yet: nothing to show, and no log made for a reader.
        false => server.plugin_logs.get(name),
    };
    let Some(log) = log else {
        return ok.body(Body::empty()).map_err(internal);
    };
    let (lines, next) = log.tail(options.tail);
    let first = budget
        .take(render(&lines, options.timestamps))
        .unwrap_or_default();
    if !options.follow {
        return ok.body(Body::from(first)).map_err(internal);
    }
    let rest = followed(log.follow(next), budget, options.timestamps);
    let body = stream::once(async { Ok(first) }).chain(rest);
    ok.body(Body::from_stream(body)).map_err(internal)
}

fn internal(e: http::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_are_checked_and_name_the_parameter() {
        let options = LogOptions::parse(&query(&[
            ("follow", "true"),
            ("tailLines", "5"),
            ("container", "x"),
        ]))
        .expect("valid");
        assert_eq!(
            options,
            LogOptions {
                follow: true,
                tail: Some(5),
                ..LogOptions::default()
            }
        );
        for (key, value) in [
            ("tailLines", "-1"),
            ("tailLines", "many"),
            ("limitBytes", "0"),
            ("limitBytes", "99999999999999999999999"),
            ("follow", "yes"),
            ("timestamps", "2"),
        ] {
            let e = LogOptions::parse(&query(&[(key, value)])).expect_err(key);
            assert_eq!(e.code(), StatusCode::BAD_REQUEST);
            assert!(e.to_string().starts_with(&format!("{key}: ")), "{e}");
        }
        let huge = LogOptions::parse(&query(&[("tailLines", "9223372036854775807")]));
        assert!(huge.is_ok());
    }

    #[test]
    fn the_budget_cuts_and_then_ends() {
        let mut budget = Budget(Some(5));
        assert_eq!(budget.take("abc".into()).as_deref(), Some(&b"abc"[..]));
        assert_eq!(budget.take("defg".into()).as_deref(), Some(&b"de"[..]));
        assert!(budget.spent());
        assert_eq!(budget.take("h".into()), None);
        let mut unbounded = Budget(None);
        assert_eq!(unbounded.take("x".repeat(10)).map(|b| b.len()), Some(10));
    }
}
