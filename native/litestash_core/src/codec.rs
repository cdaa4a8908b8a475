//! The contract's value model and its MessagePack encoding (section 5).
//!
//! Written out by hand rather than through a serde bridge: the contract
//! fixes the exact bytes (smallest int and str families, float 64 only, no
//! extension types) and the limits (64 MiB, 512 levels), and a decoder that
//! reads bytes a foreign writer left must refuse rather than guess.

use crate::error::{Error, ErrorKind, Result};

/// Stack kept free before a recursive step; below it, [`deeper`] moves on
/// to a new segment. Values nest 512 levels, and the threads we run on (a
/// dirty scheduler has a few hundred KiB) must never overflow.
const RED_ZONE: usize = 64 * 1024;
const STACK_SEGMENT: usize = 1024 * 1024;

/// Runs one level of a recursive walk, on a fresh stack segment when the
/// current one runs low.
pub fn deeper<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, f)
}

/// The largest encoded value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;

/// The deepest nesting of lists and maps. A scalar is depth 0, `[]` is 1.
pub const MAX_DEPTH: usize = 512;

/// A value the contract can store.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// nil / None.
    Nil,
    /// true or false.
    Bool(bool),
    /// An integer from -2^63 to 2^63-1.
    Int(i64),
    /// An integer from 2^63 to 2^64-1 (smaller ones are `Int`).
    UInt(u64),
    /// A float (NaN and infinities included, as a foreign writer may store them).
    Float(f64),
    /// UTF-8 text.
    Str(String),
    /// Bytes that are not text.
    Bin(Vec<u8>),
    /// A list.
    Array(Vec<Value>),
    /// A map, entries in the order given; keys are scalars.
    Map(Vec<(Value, Value)>),
}

impl Value {
    fn is_scalar(&self) -> bool {
        !matches!(self, Value::Array(_) | Value::Map(_))
    }
}

fn too_large() -> Error {
    Error::new(
        ErrorKind::ValueTooLarge,
        format!("the encoded value is larger than {MAX_VALUE_BYTES} bytes"),
    )
}

fn too_deep() -> Error {
    Error::new(
        ErrorKind::TooDeep,
        format!("the value is nested deeper than {MAX_DEPTH} levels"),
    )
}

/// Encodes `value` as contract MessagePack.
///
/// # Errors
/// [`ErrorKind::ValueTooLarge`] over 64 MiB, [`ErrorKind::TooDeep`] past
/// 512 levels, [`ErrorKind::UnsupportedValue`] for a map key that is a
/// list or map.
///
/// ```
/// use litestash_core::{encode, Value};
/// assert_eq!(encode(&Value::Int(200)).unwrap(), vec![0xcc, 200]);
/// ```
pub fn encode(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    encode_into(value, &mut out, 0)?;
    if out.len() > MAX_VALUE_BYTES {
        return Err(too_large());
    }
    Ok(out)
}

fn encode_len(
    out: &mut Vec<u8>,
    len: usize,
    fix: Option<(u8, usize)>,
    m16: u8,
    m32: u8,
) -> Result<()> {
    match fix {
        Some((base, max)) if len <= max => out.push(base | len as u8),
        _ if len <= u16::MAX as usize => {
            out.push(m16);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ if len <= u32::MAX as usize => {
            out.push(m32);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        _ => return Err(too_large()),
    }
    Ok(())
}

fn encode_uint(out: &mut Vec<u8>, n: u64) {
    if n < 128 {
        out.push(n as u8);
    } else if n <= u64::from(u8::MAX) {
        out.extend_from_slice(&[0xcc, n as u8]);
    } else if n <= u64::from(u16::MAX) {
        out.push(0xcd);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u64::from(u32::MAX) {
        out.push(0xce);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_int(out: &mut Vec<u8>, n: i64) {
    if n >= 0 {
        encode_uint(out, n as u64);
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= i64::from(i8::MIN) {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= i64::from(i16::MIN) {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= i64::from(i32::MIN) {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_into(value: &Value, out: &mut Vec<u8>, depth: usize) -> Result<()> {
    if out.len() > MAX_VALUE_BYTES {
        return Err(too_large());
    }
    match value {
        Value::Nil => out.push(0xc0),
        Value::Bool(false) => out.push(0xc2),
        Value::Bool(true) => out.push(0xc3),
        Value::Int(n) => encode_int(out, *n),
        Value::UInt(n) => encode_uint(out, *n),
        Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Str(s) => {
            if s.len() <= u8::MAX as usize && s.len() > 31 {
                out.extend_from_slice(&[0xd9, s.len() as u8]);
            } else {
                encode_len(out, s.len(), Some((0xa0, 31)), 0xda, 0xdb)?;
            }
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bin(b) => {
            if b.len() <= u8::MAX as usize {
                out.extend_from_slice(&[0xc4, b.len() as u8]);
            } else {
                encode_len(out, b.len(), None, 0xc5, 0xc6)?;
            }
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return Err(too_deep());
            }
            encode_len(out, items.len(), Some((0x90, 15)), 0xdc, 0xdd)?;
            for item in items {
                deeper(|| encode_into(item, out, depth + 1))?;
            }
        }
        Value::Map(entries) => {
            if depth >= MAX_DEPTH {
                return Err(too_deep());
            }
            encode_len(out, entries.len(), Some((0x80, 15)), 0xde, 0xdf)?;
            for (k, v) in entries {
                if !k.is_scalar() {
                    return Err(Error::new(
                        ErrorKind::UnsupportedValue,
                        "a map key must be a scalar (nil, boolean, number, text or bytes), not a list or map",
                    ));
                }
                encode_into(k, out, depth + 1)?;
                deeper(|| encode_into(v, out, depth + 1))?;
            }
        }
    }
    Ok(())
}

/// The encoding of `value` as compare-and-set compares it: every map's
/// entries sorted by the bytes of their encoded keys, and every value that
/// a host language reads back as another one written as that one: a NaN
/// or an infinite float as the text `"nan"`, `"infinity"` or
/// `"neg_infinity"` (Elixir has no such floats and reads them as those
/// atoms, which it writes as text), bytes that are UTF-8 as text (Elixir
/// has one binary type). Values that read back equal give equal bytes, so
/// a value equal to what a read returned always matches what is stored,
/// whatever wrote it.
///
/// # Errors
/// As [`encode`].
pub fn canonical(value: &Value) -> Result<Vec<u8>> {
    fn sorted(value: &Value) -> Result<Value> {
        Ok(match value {
            Value::Float(f) if f.is_nan() => Value::Str("nan".into()),
            Value::Float(f) if f.is_infinite() => {
                Value::Str(if *f > 0.0 { "infinity" } else { "neg_infinity" }.into())
            }
            Value::Bin(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => Value::Str(text.to_owned()),
                Err(_) => Value::Bin(bytes.clone()),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| deeper(|| sorted(item)))
                    .collect::<Result<_>>()?,
            ),
            Value::Map(entries) => {
                let mut keyed = entries
                    .iter()
                    .map(|(k, v)| {
                        let k = sorted(k)?;
                        Ok((encode(&k)?, k, deeper(|| sorted(v))?))
                    })
                    .collect::<Result<Vec<_>>>()?;
                keyed.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
            }
            other => other.clone(),
        })
    }
    encode(&sorted(value)?)
}

/// Decodes contract MessagePack. Every byte must be consumed.
///
/// # Errors
/// [`ErrorKind::CorruptValue`] for anything that is not one complete value
/// of the contract: truncated input, trailing bytes, extension types, the
/// reserved byte `0xc1`, text that is not UTF-8, nesting past 512 levels,
/// or a list or map key.
pub fn decode(bytes: &[u8]) -> Result<Value> {
    decode_into(bytes, &mut Values)
}

/// One scalar of a value being decoded, borrowed from the encoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    /// nil / None.
    Nil,
    /// true or false.
    Bool(bool),
    /// An integer from -2^63 to 2^63-1.
    Int(i64),
    /// An integer from 2^63 to 2^64-1.
    UInt(u64),
    /// A float.
    Float(f64),
    /// UTF-8 text (checked).
    Str(&'a str),
    /// Bytes that are not text.
    Bin(&'a [u8]),
}

/// What [`decode_into`] builds a decoded value with: [`Value`]s for
/// [`decode`], or straight into another representation (the NIF builds
/// Erlang terms) without a [`Value`] tree in between.
pub trait Build {
    /// What a decoded value becomes.
    type Out;
    /// A scalar.
    ///
    /// # Errors
    /// Whatever the builder refuses.
    fn scalar(&mut self, scalar: Scalar<'_>) -> Result<Self::Out>;
    /// A list of decoded items.
    ///
    /// # Errors
    /// Whatever the builder refuses.
    fn list(&mut self, items: Vec<Self::Out>) -> Result<Self::Out>;
    /// A map of decoded entries, in the order stored; every key was a scalar.
    ///
    /// # Errors
    /// Whatever the builder refuses (the NIF refuses a key twice).
    fn map(&mut self, entries: Vec<(Self::Out, Self::Out)>) -> Result<Self::Out>;
}

/// Builds [`Value`]s.
struct Values;

impl Build for Values {
    type Out = Value;

    fn scalar(&mut self, scalar: Scalar<'_>) -> Result<Value> {
        Ok(match scalar {
            Scalar::Nil => Value::Nil,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Int(n) => Value::Int(n),
            Scalar::UInt(n) => Value::UInt(n),
            Scalar::Float(f) => Value::Float(f),
            Scalar::Str(s) => Value::Str(s.to_owned()),
            Scalar::Bin(b) => Value::Bin(b.to_vec()),
        })
    }

    fn list(&mut self, items: Vec<Value>) -> Result<Value> {
        Ok(Value::Array(items))
    }

    fn map(&mut self, entries: Vec<(Value, Value)>) -> Result<Value> {
        Ok(Value::Map(entries))
    }
}

/// Decodes contract MessagePack as [`decode`] does, building the value
/// with `build`.
///
/// # Errors
/// As [`decode`], and whatever `build` refuses.
pub fn decode_into<B: Build>(bytes: &[u8], build: &mut B) -> Result<B::Out> {
    let mut reader = Reader { bytes, pos: 0 };
    let value = reader.value(build, 0)?;
    if reader.pos != bytes.len() {
        return Err(corrupt(format!(
            "{} trailing bytes after the value",
            bytes.len() - reader.pos
        )));
    }
    Ok(value)
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::CorruptValue,
        format!("stored value is not valid MessagePack for LiteStash: {what}"),
    )
}

/// Whether `marker` starts a list or a map.
fn is_container(marker: u8) -> bool {
    matches!(marker, 0x80..=0x9f | 0xdc..=0xdf)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| corrupt(format!("truncated at byte {}", self.pos)))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len(&mut self, width: usize) -> Result<usize> {
        Ok(match width {
            1 => usize::from(self.array::<1>()?[0]),
            2 => usize::from(u16::from_be_bytes(self.array()?)),
            _ => u32::from_be_bytes(self.array()?) as usize,
        })
    }

    fn text(&mut self, len: usize) -> Result<&'a str> {
        let at = self.pos;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| corrupt(format!("str at byte {at} is not UTF-8")))
    }

    /// A capacity no larger than the bytes left could hold, so a hostile
    /// length cannot make us allocate gigabytes up front.
    fn capacity(&self, len: usize, min_item_bytes: usize) -> usize {
        len.min((self.bytes.len() - self.pos) / min_item_bytes)
    }

    fn items<B: Build>(&mut self, build: &mut B, len: usize, depth: usize) -> Result<B::Out> {
        if depth >= MAX_DEPTH {
            return Err(corrupt(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let mut items = Vec::with_capacity(self.capacity(len, 1));
        for _ in 0..len {
            items.push(deeper(|| self.value(build, depth + 1))?);
        }
        build.list(items)
    }

    fn entries<B: Build>(&mut self, build: &mut B, len: usize, depth: usize) -> Result<B::Out> {
        if depth >= MAX_DEPTH {
            return Err(corrupt(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let mut entries = Vec::with_capacity(self.capacity(len, 2));
        for _ in 0..len {
            let at = self.pos;
            let container = self.bytes.get(at).copied().is_some_and(is_container);
            let k = deeper(|| self.value(build, depth + 1))?;
            if container {
                return Err(corrupt(format!("map key at byte {at} is a list or map")));
            }
            let v = deeper(|| self.value(build, depth + 1))?;
            entries.push((k, v));
        }
        build.map(entries)
    }

    fn value<B: Build>(&mut self, build: &mut B, depth: usize) -> Result<B::Out> {
        let at = self.pos;
        let marker = self.array::<1>()?[0];
        let scalar = match marker {
            0x00..=0x7f => Scalar::Int(i64::from(marker)),
            0x80..=0x8f => return self.entries(build, usize::from(marker & 0x0f), depth),
            0x90..=0x9f => return self.items(build, usize::from(marker & 0x0f), depth),
            0xa0..=0xbf => Scalar::Str(self.text(usize::from(marker & 0x1f))?),
            0xc0 => Scalar::Nil,
            0xc2 => Scalar::Bool(false),
            0xc3 => Scalar::Bool(true),
            0xc4..=0xc6 => {
                let len = self.len(1 << (marker - 0xc4))?;
                Scalar::Bin(self.take(len)?)
            }
            0xca => Scalar::Float(f64::from(f32::from_be_bytes(self.array()?))),
            0xcb => Scalar::Float(f64::from_be_bytes(self.array()?)),
            0xcc => Scalar::Int(i64::from(self.array::<1>()?[0])),
            0xcd => Scalar::Int(i64::from(u16::from_be_bytes(self.array()?))),
            0xce => Scalar::Int(i64::from(u32::from_be_bytes(self.array()?))),
            0xcf => {
                let n = u64::from_be_bytes(self.array()?);
                i64::try_from(n).map_or(Scalar::UInt(n), Scalar::Int)
            }
            0xd0 => Scalar::Int(i64::from(i8::from_be_bytes(self.array()?))),
            0xd1 => Scalar::Int(i64::from(i16::from_be_bytes(self.array()?))),
            0xd2 => Scalar::Int(i64::from(i32::from_be_bytes(self.array()?))),
            0xd3 => Scalar::Int(i64::from_be_bytes(self.array()?)),
            0xd9..=0xdb => {
                let len = self.len(1 << (marker - 0xd9))?;
                Scalar::Str(self.text(len)?)
            }
            0xdc | 0xdd => {
                let len = self.len(if marker == 0xdc { 2 } else { 4 })?;
                return self.items(build, len, depth);
            }
            0xde | 0xdf => {
                let len = self.len(if marker == 0xde { 2 } else { 4 })?;
                return self.entries(build, len, depth);
            }
            0xe0..=0xff => Scalar::Int(i64::from(marker as i8)),
            0xc7..=0xc9 | 0xd4..=0xd8 => {
                return Err(corrupt(format!(
                    "extension type (marker 0x{marker:02x}) at byte {at}; version 1 has none"
                )))
            }
            0xc1 => return Err(corrupt(format!("reserved byte 0xc1 at byte {at}"))),
        };
        build.scalar(scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> Value {
        let mut v = Value::Nil;
        for _ in 0..depth {
            v = Value::Array(vec![v]);
        }
        v
    }

    /// Counts what it is given, to show [`decode_into`] hands a builder
    /// every node of the value once.
    struct Count(usize);

    impl Build for Count {
        type Out = ();
        fn scalar(&mut self, _: Scalar<'_>) -> Result<()> {
            self.0 += 1;
            Ok(())
        }
        fn list(&mut self, _: Vec<()>) -> Result<()> {
            self.0 += 1;
            Ok(())
        }
        fn map(&mut self, _: Vec<((), ())>) -> Result<()> {
            self.0 += 1;
            Ok(())
        }
    }

    #[test]
    fn decode_into_a_builder_sees_every_node_and_refuses_what_decode_refuses() {
        let value = Value::Map(vec![
            (
                Value::Str("a".into()),
                Value::Array(vec![Value::Int(1), Value::Nil]),
            ),
            (Value::Int(2), Value::Bin(vec![0, 1])),
        ]);
        let bytes = encode(&value).unwrap();
        let mut count = Count(0);
        decode_into(&bytes, &mut count).unwrap();
        assert_eq!(count.0, 7);
        let bad: [&[u8]; 5] = [
            &[0xc1],
            &[0xa5, b'a'],
            &[0xc0, 0xc0],
            &[0x81, 0x90, 0x01],
            &[0x81, 0x91],
        ];
        for bytes in bad {
            let by_value = decode(bytes).unwrap_err();
            let by_builder = decode_into(bytes, &mut Count(0)).unwrap_err();
            assert_eq!(by_value.kind(), ErrorKind::CorruptValue);
            assert_eq!(by_builder.message(), by_value.message(), "{bytes:?}");
        }
        assert!(decode(&[0x81, 0x90, 0x01])
            .unwrap_err()
            .message()
            .contains("map key at byte 1 is a list or map"));
    }

    #[test]
    fn integers_use_the_smallest_encoding() {
        let cases: [(Value, &[u8]); 8] = [
            (Value::Int(0), &[0x00]),
            (Value::Int(127), &[0x7f]),
            (Value::Int(128), &[0xcc, 0x80]),
            (Value::Int(-32), &[0xe0]),
            (Value::Int(-33), &[0xd0, 0xdf]),
            (Value::Int(65535), &[0xcd, 0xff, 0xff]),
            (Value::Int(-32769), &[0xd2, 0xff, 0xff, 0x7f, 0xff]),
            (
                Value::UInt(u64::MAX),
                &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
        ];
        for (value, bytes) in cases {
            assert_eq!(encode(&value).unwrap(), bytes, "{value:?}");
            assert_eq!(decode(bytes).unwrap(), value);
        }
    }

    #[test]
    fn depth_512_is_stored_and_513_is_refused() {
        let ok = encode(&nested(512)).unwrap();
        assert_eq!(decode(&ok).unwrap(), nested(512));
        assert_eq!(encode(&nested(513)).unwrap_err().kind(), ErrorKind::TooDeep);
        let mut deep = vec![0x91; 513];
        deep.push(0xc0);
        assert_eq!(decode(&deep).unwrap_err().kind(), ErrorKind::CorruptValue);
    }

    #[test]
    fn float_32_is_read_as_float() {
        assert_eq!(
            decode(&[0xca, 0x3f, 0xc0, 0, 0]).unwrap(),
            Value::Float(1.5)
        );
    }

    #[test]
    fn malformed_input_is_corrupt_value_not_a_panic() {
        let cases: [&[u8]; 9] = [
            &[],
            &[0xc1],
            &[0xd4, 0x01, 0x00],
            &[0xa3, b'a'],
            &[0xa2, 0xff, 0xfe],
            &[0xc0, 0xc0],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0x81, 0x90, 0x00],
            &[0xcf, 0x00],
        ];
        for bytes in cases {
            assert_eq!(
                decode(bytes).unwrap_err().kind(),
                ErrorKind::CorruptValue,
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn canonical_bytes_are_equal_for_values_that_read_back_equal() {
        let same = [
            (Value::Float(f64::NAN), Value::Str("nan".into())),
            (Value::Float(f64::INFINITY), Value::Str("infinity".into())),
            (
                Value::Float(f64::NEG_INFINITY),
                Value::Str("neg_infinity".into()),
            ),
            (Value::Bin(b"abc".to_vec()), Value::Str("abc".into())),
            (
                Value::Map(vec![
                    (Value::Bin(b"x".to_vec()), Value::Float(f64::NAN)),
                    (Value::Str("a".into()), Value::Int(1)),
                ]),
                Value::Map(vec![
                    (Value::Str("a".into()), Value::Int(1)),
                    (Value::Str("x".into()), Value::Str("nan".into())),
                ]),
            ),
        ];
        for (stored, read_back) in same {
            assert_eq!(canonical(&stored).unwrap(), canonical(&read_back).unwrap());
        }
        let differ = [
            (Value::Bin(vec![0xff]), Value::Str("\u{ff}".into())),
            (Value::Int(1), Value::Float(1.0)),
        ];
        for (a, b) in differ {
            assert_ne!(canonical(&a).unwrap(), canonical(&b).unwrap());
        }
    }

    #[test]
    fn a_list_as_map_key_is_refused_on_encode() {
        let v = Value::Map(vec![(Value::Array(vec![]), Value::Nil)]);
        assert_eq!(encode(&v).unwrap_err().kind(), ErrorKind::UnsupportedValue);
    }
}
