//! The raw format's serde rule, in one pass over the bytes: a string is its UTF-8 bytes, a byte
//! buffer ([`crate::Bytes`], or a field with `#[serde(with = "serde_bytes")]`) is its bytes,
//! nothing (`()`, `None`, a unit struct) is no bytes, and newtypes and `Some` are what they hold.
//! Everything else is refused with [`crate::RAW_RULE`].

use serde::Serialize;
use serde::de::{self, Visitor};
use serde::ser::{self, Impossible};

use crate::RAW_RULE;

/// The error of both directions: a message.
pub(crate) type Error = de::value::Error;

fn refused() -> Error {
    <Error as ser::Error>::custom(RAW_RULE)
}

/// Appends a value's raw form to a buffer.
pub(crate) struct Serializer<'a> {
    pub(crate) output: &'a mut Vec<u8>,
    /// Extism's convention: also the numbers it has bytes for (little-endian) and `bool`.
    pub(crate) extism: bool,
}

/// A number as Extism's convention writes it (little-endian), if the serializer follows it.
macro_rules! little_endian {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method(self, value: $ty) -> Result<(), Error> {
            if !self.extism {
                return Err(refused());
            }
            self.output.extend_from_slice(&value.to_le_bytes());
            Ok(())
        }
    )*};
}

macro_rules! refuse {
    ($($method:ident($($ty:ty),*);)*) => {$(
        fn $method(self, $(_: $ty),*) -> Result<(), Error> {
            Err(refused())
        }
    )*};
}

impl<'a> ser::Serializer for Serializer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, value: &str) -> Result<(), Error> {
        self.output.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn serialize_bytes(self, value: &[u8]) -> Result<(), Error> {
        self.output.extend_from_slice(value);
        Ok(())
    }

    fn serialize_char(self, value: char) -> Result<(), Error> {
        self.serialize_str(value.encode_utf8(&mut [0; 4]))
    }

    fn serialize_unit(self) -> Result<(), Error> {
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Error> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    refuse! {
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u128(u128);
    }

    little_endian! {
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_f32(f32);
        serialize_f64(f64);
    }

    fn serialize_bool(self, value: bool) -> Result<(), Error> {
        if !self.extism {
            return Err(refused());
        }
        self.output.push(u8::from(value));
        Ok(())
    }

    /// A unit variant (`enum Mode { Fast }`) is its name, as in JSON.
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(refused())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(refused())
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(refused())
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(refused())
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(refused())
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(refused())
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(refused())
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(refused())
    }
}

/// Reads a value from its raw form: the whole input is one string, one byte buffer, or nothing.
pub(crate) struct Deserializer<'de> {
    pub(crate) input: &'de [u8],
}

impl<'de> Deserializer<'de> {
    fn text(&self) -> Result<&'de str, Error> {
        std::str::from_utf8(self.input).map_err(|_| {
            <Error as de::Error>::custom(format_args!("{RAW_RULE} (the input is not UTF-8)"))
        })
    }
}

impl<'de> de::Deserializer<'de> for Deserializer<'de> {
    type Error = Error;

    /// A self-describing target (an untagged enum, `serde_json::Value`): nothing, else text when
    /// the bytes are UTF-8, else bytes.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.input.is_empty() {
            visitor.visit_unit()
        } else {
            match std::str::from_utf8(self.input) {
                Ok(text) => visitor.visit_borrowed_str(text),
                Err(_) => visitor.visit_borrowed_bytes(self.input),
            }
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_str(self.text()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_bytes(self.input)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_bytes(self.input)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.input.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.input.is_empty() {
            visitor.visit_unit()
        } else {
            Err(<Error as de::Error>::custom(format_args!(
                "{RAW_RULE} (expected no input, got {} bytes)",
                self.input.len()
            )))
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

    /// A unit variant, by its name (the text); a variant with data is refused by the visitor.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_enum(de::IntoDeserializer::<Error>::into_deserializer(
            self.text()?,
        ))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// Decodes a `T` from its raw form; a type the raw format cannot carry is refused with the rule.
pub(crate) fn decode<T: de::DeserializeOwned>(input: &[u8]) -> Result<T, Error> {
    bounded(T::deserialize(Deserializer { input }), Some(RAW_RULE))
}

/// Decodes a `T` by Extism's convention (`crate::extism`).
pub(crate) fn decode_extism<T: de::DeserializeOwned>(input: &[u8]) -> Result<T, Error> {
    bounded(T::deserialize(crate::extism::Arg { input }), None)
}

/// Decodes a `T` (a tuple, or a struct field by field) from an Extism host function's framed
/// arguments, each by Extism's convention.
pub(crate) fn decode_extism_args<T: de::DeserializeOwned>(frame: &[u8]) -> Result<T, Error> {
    let args = crate::extism::split_args(frame)?;
    bounded(T::deserialize(crate::extism::Args { args }), None)
}

/// A decode error, its serde message cut short (serde quotes the whole guest-sent text in a
/// type error) and, unless it is already, prefixed with `rule` (none for Extism's convention).
fn bounded<T>(result: Result<T, Error>, rule: Option<&str>) -> Result<T, Error> {
    result.map_err(|error| {
        let message = error.to_string();
        if rule.is_some_and(|rule| message.starts_with(rule)) {
            return error;
        }
        let mut end = message.len().min(MAX_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let cut = if end < message.len() { "…" } else { "" };
        match rule {
            Some(rule) => {
                <Error as de::Error>::custom(format_args!("{rule}: {}{cut}", &message[..end]))
            }
            None => <Error as de::Error>::custom(format_args!("{}{cut}", &message[..end])),
        }
    })
}

/// The longest serde message a decode error repeats.
const MAX_MESSAGE: usize = 512;

/// Appends `value`'s raw form to `output`; on error, `output` is as it was.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    output: &mut Vec<u8>,
) -> Result<(), Error> {
    encode_with(value, output, false)
}

/// [`encode_into`] by Extism's convention: also `i32`, `i64`, `u32`, `u64`, `f32`, `f64`
/// (little-endian) and `bool` (one byte).
pub(crate) fn encode_extism_into<T: Serialize + ?Sized>(
    value: &T,
    output: &mut Vec<u8>,
) -> Result<(), Error> {
    encode_with(value, output, true)
}

fn encode_with<T: Serialize + ?Sized>(
    value: &T,
    output: &mut Vec<u8>,
    extism: bool,
) -> Result<(), Error> {
    let before = output.len();
    value
        .serialize(Serializer {
            output: &mut *output,
            extism,
        })
        .inspect_err(|_| output.truncate(before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_describing_target_sees_nothing_text_or_bytes() {
        assert_eq!(
            decode::<serde_json::Value>(b"").unwrap(),
            serde_json::Value::Null
        );
        assert_eq!(
            decode::<serde_json::Value>(b"text").unwrap(),
            serde_json::Value::String("text".into())
        );
        // Not UTF-8: bytes, which a JSON value cannot hold.
        assert!(decode::<serde_json::Value>(&[0xff, 0]).is_err());
    }

    #[test]
    fn a_type_error_does_not_repeat_a_large_input() {
        let input = "é".repeat(100_000);
        let message = decode::<u32>(input.as_bytes()).unwrap_err().to_string();
        assert!(message.starts_with(RAW_RULE), "{message}");
        assert!(
            message.len() < RAW_RULE.len() + MAX_MESSAGE + 8,
            "{}",
            message.len()
        );
        assert!(message.ends_with('…'));
    }

    #[test]
    fn unit_variants_are_their_names() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        enum Mode {
            Fast,
            Tuned(u8),
        }
        let mut output = Vec::new();
        encode_into(&Mode::Fast, &mut output).unwrap();
        assert_eq!(output, b"Fast");
        assert_eq!(decode::<Mode>(b"Fast").unwrap(), Mode::Fast);
        assert!(decode::<Mode>(b"Slow").is_err());
        assert!(
            decode::<Mode>(b"Tuned").is_err(),
            "a variant with data has no raw form"
        );
        assert!(encode_into(&Mode::Tuned(1), &mut output).is_err());
        assert_eq!(output, b"Fast", "unchanged by the failed encode");
    }
}
