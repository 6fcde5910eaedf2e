//! Entry names compared as a few machine words: what the entry allowlist (`config`), the
//! export table (`runtime`) and the pool's last-entry cache (`plugin`) all use.

/// Whether two names are equal: compared as [`NameKey`]s (in registers, no `memcmp`) when both
/// have at most 16 bytes, as strings otherwise.
#[inline]
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    match (NameKey::of(a), NameKey::of(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

/// A name of up to 16 bytes as three words, which together say exactly which name it is: its
/// length and its first and last (up to) eight bytes, overlapping. An entry is found by
/// comparing keys held side by side in one array, without reading the entries' strings.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct NameKey {
    len: usize,
    head: u64,
    tail: u64,
}

impl NameKey {
    /// The key of an entry whose name is longer than 16 bytes: equal to no key of a short name.
    pub(crate) const LONG: Self = Self {
        len: usize::MAX,
        head: 0,
        tail: 0,
    };

    /// The key of `name`, if it has at most 16 bytes.
    #[inline(always)]
    pub(crate) fn of(name: &str) -> Option<Self> {
        let s = name.as_bytes();
        let len = s.len();
        let word = |at: usize| s[at..at + 8].try_into().map_or(0, u64::from_ne_bytes);
        let half = |at: usize| s[at..at + 4].try_into().map_or(0, u32::from_ne_bytes);
        let (head, tail) = match len {
            0 => (0, 0),
            1..=3 => (
                u64::from(s[0]) | u64::from(s[len / 2]) << 8 | u64::from(s[len - 1]) << 16,
                0,
            ),
            4..=7 => (u64::from(half(0)), u64::from(half(len - 4))),
            8..=16 => (word(0), word(len - 8)),
            _ => return None,
        };
        Some(Self { len, head, tail })
    }
}

#[cfg(test)]
mod tests {
    use super::{NameKey, same_name};

    #[test]
    fn name_keys_are_equal_exactly_when_names_are() {
        let base: String = ('a'..='z').chain('A'..='Z').collect();
        for len in 0..=16 {
            let name = &base[..len];
            let key = NameKey::of(name).unwrap();
            assert!(key == NameKey::of(name).unwrap());
            for at in 0..len {
                let mut other = name.as_bytes().to_vec();
                other[at] = b'_';
                let other = String::from_utf8(other).unwrap();
                assert!(key != NameKey::of(&other).unwrap(), "{name} vs {other}");
            }
            assert!(NameKey::of(&base[..len + 1]) != Some(key));
            assert!(key != NameKey::LONG);
        }
        assert!(NameKey::of(&base[..17]).is_none());
    }

    #[test]
    fn same_name_agrees_with_string_equality_at_every_length() {
        let base: String = ('a'..='z').chain('A'..='Z').collect();
        for len in 0..=40 {
            let name = &base[..len];
            assert!(same_name(name, name), "{name}");
            for at in 0..len {
                let mut other = name.as_bytes().to_vec();
                other[at] = b'_';
                let other = String::from_utf8(other).unwrap();
                assert!(!same_name(name, &other), "{name} vs {other}");
            }
            assert!(!same_name(name, &base[..len + 1]));
        }
    }
}
