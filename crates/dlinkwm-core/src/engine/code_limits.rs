//! What a plugin's bytes must satisfy before they reach the compiler.
//!
//! Cranelift cannot be interrupted once it compiles a function, and its time and memory grow
//! faster than linearly with some shapes of code (a function of a million nested blocks runs for
//! minutes and takes hundreds of MB). wasmtime's validator bounds many things (function size,
//! locals, types) but not block nesting. So before compiling, DlinkWM:
//! - refuses bytes over the engine's `max_module_bytes`;
//! - refuses bytes that are neither the wasm binary header nor text that looks like WAT with one
//!   plain sentence naming their first bytes ([`not_wasm`], also run before any cache lookup),
//!   and turns WAT text into a binary itself, so text gets the same checks;
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

/// Checks the size of `bytes` (a binary or WAT text) and returns them as a wasm binary.
pub(crate) fn to_binary(bytes: &[u8], max_bytes: usize) -> Result<Cow<'_, [u8]>, Refused> {
    if bytes.len() > max_bytes {
        return Err(Refused(format!(
            "{} bytes is over the engine's max_module_mib of {} MiB",
            bytes.len(),
            max_bytes >> 20
        )));
    }
    let binary = if bytes.starts_with(b"\0asm") {
        Cow::Borrowed(bytes)
    } else if let Some(reason) = not_wasm(bytes) {
        return Err(Refused(reason));
    } else {
        let binary = wat::parse_bytes(bytes).map_err(|error| Refused(error.to_string()))?;
        if binary.len() > max_bytes {
            return Err(Refused(format!(
                "its binary of {} bytes is over the engine's max_module_mib of {} MiB",
                binary.len(),
                max_bytes >> 20
            )));
        }
        Cow::Owned(binary.into_owned())
    };
    Ok(binary)
}

/// Checks `bytes` (a binary or WAT text) and returns the wasm binary to compile.
#[cfg(test)]
fn check(bytes: &[u8], max_bytes: usize) -> Result<Cow<'_, [u8]>, Refused> {
    let binary = to_binary(bytes, max_bytes)?;
    check_nesting(&binary, false)?;
    Ok(binary)
}

/// Why `bytes` are not WebAssembly at all, or `None` when they may be: the binary format
/// starts with the magic `\0asm`, the text format (after white space, `;;` and nested `(; ;)`
/// comments) with `(`. Anything else would get the WAT parser's complaint about its first
/// character ("expected `(`"), which does not say that the file is no wasm.
pub(crate) fn not_wasm(bytes: &[u8]) -> Option<String> {
    if bytes.starts_with(b"\0asm") {
        return None;
    }
    let (mut rest, mut comments) = (bytes, 0_usize);
    loop {
        rest = match rest {
            [b'(', b';', tail @ ..] => {
                comments += 1;
                tail
            }
            [b';', b')', tail @ ..] if comments > 0 => {
                comments -= 1;
                tail
            }
            [_, tail @ ..] if comments > 0 => tail,
            // A comment left open: the WAT parser says so.
            [] if comments > 0 => return None,
            [b';', b';', tail @ ..] => {
                let end = tail.iter().position(|&b| b == b'\n' || b == b'\r');
                &tail[end.unwrap_or(tail.len())..]
            }
            [b' ' | b'\t' | b'\n' | b'\r', tail @ ..] => tail,
            [b'(', ..] => return None,
            _ => break,
        };
    }
    let first: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let start = if first.is_empty() {
        "it is empty".to_owned()
    } else {
        format!("it starts with bytes {}", first.join(" "))
    };
    Some(format!(
        "{start}, neither the wasm magic `\\0asm` nor WAT text"
    ))
}

/// Refuses a function whose blocks nest deeper than [`MAX_NESTING`], and with `no_tail_calls`
/// (Winch, the first tier of tiered reloads, which has none in wasmtime 48) one that makes a tail
/// call: found in this pass, the refusal costs no compile before Cranelift takes over.
pub(crate) fn check_nesting(binary: &[u8], no_tail_calls: bool) -> Result<(), Refused> {
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
                Operator::ReturnCall { .. }
                | Operator::ReturnCallIndirect { .. }
                | Operator::ReturnCallRef { .. }
                    if no_tail_calls =>
                {
                    return Err(Refused(format!(
                        "function {} makes tail calls, which Winch does not compile",
                        function - 1
                    )));
                }
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
    fn tail_calls_are_refused_only_for_winch() {
        let binary = wat::parse_str(
            "(module (func $f (result i32) i32.const 1) (func (result i32) return_call $f))",
        )
        .unwrap();
        assert!(check_nesting(&binary, false).is_ok());
        let Refused(reason) = check_nesting(&binary, true).unwrap_err();
        assert!(reason.contains("function 1 makes tail calls"), "{reason}");
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
            "it starts with bytes 67 61 72 62 61 67 65 0a, neither the wasm magic `\\0asm` nor WAT text"
        );
        assert!(check(b"", 1).unwrap_err().0.contains("empty"));
    }

    #[test]
    fn wat_behind_comments_is_wat() {
        assert!(not_wasm(b"  ;; a comment\n(module)").is_none());
        assert!(not_wasm(b"(; block (; nested ;) ;) (module)").is_none());
        assert!(not_wasm(b"module").is_some());
        assert!(not_wasm(&[0xff, 0xfe]).is_some());
        assert!(check(b";; hi\n(module)", 1 << 20).is_ok());
    }
}
