//! Text from a plugin made safe to print: everything a guest wrote (log lines, error and panic
//! messages, export and import names, text output) passes through [`guest_text`] on its way to
//! the terminal, so a plugin cannot move the cursor, recolour, retitle or clear the user's
//! terminal, or forge lines that look like the CLI's own.
//!
//! JSON output needs nothing more: `serde_json` already escapes control characters in strings.

use std::borrow::Cow;

/// `text` with every control character (C0, DEL, C1) and bidirectional-text control escaped as
/// Rust writes them: ESC becomes `\u{1b}`, a newline `\n`. A tab stays: it cannot do harm.
///
/// The CLI ends each line itself, so a guest's newline inside one message is escaped too.
pub fn guest_text(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// As [`guest_text`], but newlines stay: for diagnostics that are lines by design, such as the
/// WAT parser's error with its caret under the offending column.
pub fn keeping_lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let needs_escape = |c: char| match c {
        '\t' => false,
        '\n' => !keep_newlines,
        // Directional formatting (LRM, RLM, embeddings, overrides, isolates): they reorder what
        // the user reads without being visible themselves.
        '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        c => c.is_control(),
    };
    if !text.contains(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !needs_escape(c) => escaped.push(c),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            c => escaped.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_as_rust_writes_them() {
        assert_eq!(
            guest_text("\x1b[31mred\x1b[0m\nforged\r\u{9b}\u{7f}"),
            "\\u{1b}[31mred\\u{1b}[0m\\nforged\\r\\u{9b}\\u{7f}"
        );
        assert_eq!(guest_text("a\u{202e}b\u{2066}"), "a\\u{202e}b\\u{2066}");
    }

    #[test]
    fn plain_text_tabs_and_non_ascii_text_are_left_alone() {
        let text = "plain \"text\" \\ with\ta tab, é, 日本";
        assert!(matches!(guest_text(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn diagnostics_keep_their_lines_but_nothing_else() {
        assert_eq!(
            keeping_lines("expected `(`\n --> a.wat:1:1\n\x1b]0;title\x07"),
            "expected `(`\n --> a.wat:1:1\n\\u{1b}]0;title\\u{7}"
        );
    }
}
