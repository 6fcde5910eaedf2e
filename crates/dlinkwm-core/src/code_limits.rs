//! What a plugin's bytes must satisfy before they reach the compiler.
//!
//! Cranelift cannot be interrupted once it compiles a function, and its time and memory grow
//! faster than linearly with some shapes of code (a function of a million nested blocks runs for
//! minutes and takes hundreds of MB). wasmtime's validator bounds many things (function size,
//! locals, types) but not block nesting. So before compiling, DlinkWM:
//! - refuses bytes over the engine's `max_module_bytes`;
//! - turns WAT text into a binary itself (so text gets the same checks), and refuses bytes that
//!   are neither the wasm binary header nor text that looks like WAT, with one plain sentence;
//! - reads every function body of every core module (a component's included) and refuses one
//!   whose blocks nest deeper than [`MAX_NESTING`].

use std::borrow::Cow;

use wasmparser::{Operator, Parser, Payload};

/// The deepest block nesting a function may have. Compilers emit a few hundred at most (a
/// `match` of N arms is N nested blocks; CPython's interpreter loop is a few hundred deep).
pub const MAX_NESTING: usize = 10_000;

/// Why bytes were refused before compiling: the sentence for [`crate::Error::InvalidModule`].
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) String);

/// Checks `bytes` (a binary or WAT text) and returns the wasm binary to compile.
pub(crate) fn check(bytes: &[u8], max_bytes: usize) -> Result<Cow<'_, [u8]>, Refused> {
    if bytes.len() > max_bytes {
        return Err(Refused(format!(
            "{} bytes is over the engine's max_module_mib of {} MiB",
            bytes.len(),
            max_bytes >> 20
        )));
    }
    let binary = if bytes.starts_with(b"\0asm") {
        Cow::Borrowed(bytes)
    } else if looks_like_wat(bytes) {
        let binary = wat::parse_bytes(bytes).map_err(|error| Refused(error.to_string()))?;
        if binary.len() > max_bytes {
            return Err(Refused(format!(
                "its binary of {} bytes is over the engine's max_module_mib of {} MiB",
                binary.len(),
                max_bytes >> 20
            )));
        }
        Cow::Owned(binary.into_owned())
    } else {
        return Err(Refused(not_wasm(bytes)));
    };
    check_nesting(&binary)?;
    Ok(binary)
}

/// Whether `bytes` are UTF-8 text whose first token (after whitespace and comments) is `(`.
fn looks_like_wat(bytes: &[u8]) -> bool {
    let Ok(mut text) = std::str::from_utf8(bytes) else {
        return false;
    };
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix(";;") {
            text = rest.split_once('\n').map_or("", |(_, rest)| rest);
        } else if let Some(rest) = text.strip_prefix("(;") {
            // Block comments nest; an unclosed one is left to the WAT parser.
            let mut depth = 1usize;
            let mut chars = rest.char_indices();
            let mut end = rest.len();
            while let Some((at, c)) = chars.next() {
                let next = rest[at + c.len_utf8()..].chars().next();
                match (c, next) {
                    ('(', Some(';')) => {
                        depth += 1;
                        chars.next();
                    }
                    (';', Some(')')) => {
                        depth -= 1;
                        chars.next();
                        if depth == 0 {
                            end = at + 2;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            if depth != 0 {
                return true;
            }
            text = &rest[end..];
        } else {
            return text.starts_with('(');
        }
    }
}

/// One sentence for bytes that are neither a wasm binary nor WAT.
fn not_wasm(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "not a WebAssembly module: the file is empty".to_owned();
    }
    let head: Vec<String> = bytes
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!(
        "not a WebAssembly module: it starts with the bytes {} (neither the wasm header \
         00 61 73 6d nor WAT text)",
        head.join(" ")
    )
}

fn check_nesting(binary: &[u8]) -> Result<(), Refused> {
    let mut function = 0usize;
    for payload in Parser::new(0).parse_all(binary) {
        // Malformed bytes are left to wasmtime's validator, which says what is wrong.
        let Ok(payload) = payload else {
            return Ok(());
        };
        let Payload::CodeSectionEntry(body) = payload else {
            continue;
        };
        function += 1;
        let Ok(mut operators) = body.get_operators_reader() else {
            return Ok(());
        };
        let mut depth = 0usize;
        while !operators.eof() {
            let Ok(operator) = operators.read() else {
                return Ok(());
            };
            match operator {
                Operator::Block { .. }
                | Operator::Loop { .. }
                | Operator::If { .. }
                | Operator::Try { .. }
                | Operator::TryTable { .. } => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(Refused(format!(
                            "function {} nests blocks deeper than {MAX_NESTING}, which would make \
                             compiling it take minutes",
                            function - 1
                        )));
                    }
                }
                Operator::End | Operator::Delegate { .. } => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!(
            "(module (func {} {}))",
            "(block ".repeat(depth),
            ")".repeat(depth)
        )
    }

    #[test]
    fn deep_nesting_is_refused_and_normal_nesting_passes() {
        assert!(check(nested(100).as_bytes(), usize::MAX).is_ok());
        let Refused(reason) = check(nested(MAX_NESTING + 1).as_bytes(), usize::MAX).unwrap_err();
        assert!(reason.contains("nests blocks deeper"), "{reason}");
    }

    #[test]
    fn size_and_garbage_are_refused_with_one_sentence() {
        let Refused(reason) = check(b"\0asm\x01\0\0\0", 4).unwrap_err();
        assert!(reason.contains("max_module_mib"), "{reason}");
        let Refused(reason) = check(b"garbage\n", 1 << 20).unwrap_err();
        assert_eq!(
            reason,
            "not a WebAssembly module: it starts with the bytes 67 61 72 62 61 67 65 0a \
             (neither the wasm header 00 61 73 6d nor WAT text)"
        );
        assert!(check(b"", 1).unwrap_err().0.contains("empty"));
    }

    #[test]
    fn wat_behind_comments_is_wat() {
        assert!(looks_like_wat(b"  ;; a comment\n(module)"));
        assert!(looks_like_wat(b"(; block (; nested ;) ;) (module)"));
        assert!(!looks_like_wat(b"module"));
        assert!(!looks_like_wat(&[0xff, 0xfe]));
        assert!(check(b";; hi\n(module)", 1 << 20).is_ok());
    }
}
