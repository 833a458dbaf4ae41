//! Untrusted text made safe to print: control characters and bidirectional overrides escaped, cut to a size with a mark.

/// What marks a cut.
pub const CUT: char = '…';

/// `text` with control characters (newlines, the escape that starts a terminal sequence…) and
/// bidirectional overrides written as Rust escapes (`\n`, `\u{1b}`), cut to at most `max` bytes
/// with `…` marking a cut: guest text cannot forge log lines or drive an operator's terminal.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    // Where to cut if the rest does not fit: after the last character (or escape) that leaves
    // room for the mark.
    let mut cut = None;
    for c in text.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        let start = out.len();
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if cut.is_none() && out.len() + CUT.len_utf8() > max {
            cut = Some(start);
        }
        if out.len() > max {
            out.truncate(cut.unwrap_or(start));
            out.push(CUT);
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_and_cuts() {
        assert_eq!(printable("plain text", 100), "plain text");
        assert_eq!(printable("a\nb\rc\td", 100), "a\\nb\\rc\\td");
        assert_eq!(printable("\u{202e}evil", 100), "\\u{202e}evil");
        let cut = printable(&"é".repeat(100), 11);
        assert_eq!(cut, "éééé…");
        assert!(cut.len() <= 11);
        let cut = printable(&"\u{1b}".repeat(10), 12);
        assert_eq!(cut, "\\u{1b}…");
    }
}
