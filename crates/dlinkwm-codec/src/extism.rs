//! Extism's convention (the `extism-convert` crate's `ToBytes`/`FromBytes`), for Extism plugins
//! and their host functions, which pass bytes with no format: a string or a byte buffer is its
//! bytes, nothing (`()`, `None`) is no bytes, an `i32`/`u32`/`f32` is 4 little-endian bytes, an
//! `i64`/`u64`/`f64` 8, a `bool` 1, and anything else is JSON (Extism's `Json<T>`).
//!
//! A host function of several arguments gets them framed in one input (see
//! [`dlinkwm_abi::EXTISM_ARGS_FRAME`]), read as a tuple (or a struct, field by field in order)
//! whose elements each follow the convention.

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

use crate::raw;

type Error = raw::Error;

#[cold]
fn custom(message: impl std::fmt::Display) -> Error {
    <Error as de::Error>::custom(message)
}

/// One value (an input, an output, one argument) read by Extism's convention.
pub(crate) struct Arg<'de> {
    pub(crate) input: &'de [u8],
}

impl<'de> Arg<'de> {
    fn raw(&self) -> raw::Deserializer<'de> {
        raw::Deserializer { input: self.input }
    }

    /// What JSON makes of the whole input (nothing after the value).
    fn json<T>(
        self,
        read: impl FnOnce(
            &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
        ) -> serde_json::Result<T>,
    ) -> Result<T, Error> {
        let mut json = serde_json::Deserializer::from_slice(self.input);
        read(&mut json)
            .and_then(|value| json.end().map(|()| value))
            .map_err(|error| custom(format_args!("not JSON of the expected shape: {error}")))
    }

    fn little_endian<const N: usize>(&self, what: &str) -> Result<[u8; N], Error> {
        self.input.try_into().map_err(|_| {
            custom(format_args!(
                "by Extism's convention `{what}` is {N} little-endian bytes, not {}",
                self.input.len()
            ))
        })
    }
}

macro_rules! little_endian {
    ($($method:ident $visit:ident $ty:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.$visit($ty::from_le_bytes(self.little_endian(stringify!($ty))?))
        }
    )*};
}

macro_rules! as_json {
    ($($method:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.json(|json| de::Deserializer::$method(json, visitor))
        }
    )*};
}

macro_rules! as_raw {
    ($($method:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            de::Deserializer::$method(self.raw(), visitor).map_err(extism_message)
        }
    )*};
}

/// A raw-format error in Extism's terms (its advice to use JSON or postcard does not apply).
#[cold]
fn extism_message(error: Error) -> Error {
    let message = error.to_string();
    match message.strip_prefix(crate::RAW_RULE) {
        Some(rest) => custom(format_args!("not a value by Extism's convention{rest}")),
        None => error,
    }
}

impl<'de> de::Deserializer<'de> for Arg<'de> {
    type Error = Error;

    little_endian! {
        deserialize_i32 visit_i32 i32;
        deserialize_i64 visit_i64 i64;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
        deserialize_f32 visit_f32 f32;
        deserialize_f64 visit_f64 f64;
    }

    // Self-describing targets (`serde_json::Value`, untagged enums), the numbers Extism has no
    // bytes for, and every compound value: JSON.
    as_json! {
        deserialize_any;
        deserialize_i8;
        deserialize_i16;
        deserialize_u8;
        deserialize_u16;
        deserialize_seq;
        deserialize_map;
    }

    as_raw! {
        deserialize_char;
        deserialize_str;
        deserialize_string;
        deserialize_bytes;
        deserialize_byte_buf;
        deserialize_identifier;
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let [byte] = self.little_endian::<1>("bool")?;
        visitor.visit_bool(byte != 0)
    }

    /// Whatever the bytes, as Extism's `()` reads them (a host function whose plugin passes an
    /// argument the method ignores).
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.input.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        self.json(|json| de::Deserializer::deserialize_tuple(json, len, visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.json(|json| de::Deserializer::deserialize_tuple_struct(json, name, len, visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.json(|json| de::Deserializer::deserialize_struct(json, name, fields, visitor))
    }

    /// JSON when the bytes are a JSON string or object; otherwise a unit variant by its name.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if matches!(self.input.first(), Some(b'"' | b'{')) {
            self.json(|json| de::Deserializer::deserialize_enum(json, name, variants, visitor))
        } else {
            de::Deserializer::deserialize_enum(self.raw(), name, variants, visitor)
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// The arguments of a host function of several, out of their frame (checked: the count, each
/// length, nothing left over).
pub(crate) fn split_args(frame: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let malformed = |why: &str| custom(format_args!("malformed Extism arguments frame: {why}"));
    let mut rest = frame;
    let take_u32 = |rest: &mut &[u8]| -> Result<usize, Error> {
        let (head, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| malformed("it ends inside a length"))?;
        *rest = tail;
        usize::try_from(u32::from_le_bytes(*head)).map_err(|_| malformed("a length overflows"))
    };
    let count = take_u32(&mut rest)?;
    if count > dlinkwm_abi::MAX_EXTISM_ARGS {
        return Err(malformed(
            "more arguments than an Extism host function may take",
        ));
    }
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let len = take_u32(&mut rest)?;
        if len > rest.len() {
            return Err(malformed("an argument is longer than what follows"));
        }
        let (arg, tail) = rest.split_at(len);
        args.push(arg);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(malformed("bytes after the last argument"));
    }
    Ok(args)
}

/// Several arguments, read as a sequence (a tuple, or a struct field by field).
pub(crate) struct Args<'de> {
    pub(crate) args: Vec<&'de [u8]>,
}

struct ArgsAccess<'a, 'de> {
    args: std::slice::Iter<'a, &'de [u8]>,
    count: usize,
}

impl ArgsAccess<'_, '_> {
    /// The 1-based position of the argument when `left` were still to come.
    fn index(&self, left: usize) -> usize {
        self.count - left + 1
    }
}

impl<'de> SeqAccess<'de> for ArgsAccess<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let index = self.args.len();
        self.args
            .next()
            .map(|input| {
                seed.deserialize(Arg { input }).map_err(|error| {
                    custom(format_args!("argument {}: {error}", self.index(index)))
                })
            })
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.args.len())
    }
}

impl<'de> de::Deserializer<'de> for Args<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut access = ArgsAccess {
            args: self.args.iter(),
            count: self.args.len(),
        };
        let value = visitor.visit_seq(&mut access)?;
        let left = access.args.len();
        if left > 0 {
            return Err(custom(format_args!(
                "the host function was given {} arguments; the method takes {}",
                self.args.len(),
                self.args.len() - left
            )));
        }
        Ok(value)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(args: &[&[u8]]) -> Vec<u8> {
        let mut frame = Vec::new();
        crate::frame_extism_args(args, &mut frame);
        frame
    }

    #[test]
    fn an_argument_that_is_not_its_element_is_named() {
        let error = crate::decode_extism_args::<(String, u32)>(&frame(&[b"key", b"7"]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("argument 2") && error.contains("`u32` is 4 little-endian bytes"),
            "{error}"
        );
        // `()` takes whatever comes, as Extism's does.
        crate::decode_extism::<()>(b"ignored").unwrap();
        let error = crate::decode_extism::<String>(&[0xff])
            .unwrap_err()
            .to_string();
        assert!(!error.contains("postcard"), "{error}");
    }

    #[test]
    fn a_frame_is_checked_before_it_is_split() {
        let good = frame(&[b"key", &7u32.to_le_bytes()]);
        assert_eq!(
            split_args(&good).unwrap(),
            [b"key".as_slice(), &7u32.to_le_bytes()]
        );
        for bad in [
            &good[..good.len() - 1],
            &good[..2],
            &[good.as_slice(), b"x"].concat(),
            &u32::MAX.to_le_bytes(),
            &[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            b"",
        ] {
            assert!(split_args(bad).is_err(), "{bad:?}");
        }
    }
}
