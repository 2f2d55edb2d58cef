//! A serde serializer that writes canonical JSON directly (object keys sorted by their
//! UTF-8 bytes, compact), without building a `serde_json::Value` first.
//!
//! Objects are written in place; one whose keys did not arrive in sorted order has its
//! entries rearranged when it ends. Numbers are written by serde_json itself and strings
//! with serde_json's escaping rules (a test compares them byte for byte), so the output is
//! exactly that of the `Value` path ([`crate::record::canonicalize`]), which tests also
//! compare against.

use serde::ser::{self, Serialize};

/// serde_json's error serves: it is what the scalars are written with, and it is a
/// `serde::ser::Error`.
type R<T = ()> = Result<T, serde_json::Error>;

/// Appends the canonical JSON of `value` to `out` (what [`write_event`] must equal for
/// events; the recorder itself writes events only).
#[cfg(test)]
pub(crate) fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> R {
    with_ctx(out, |c| value.serialize(Canonical { c }))
}

/// Appends the canonical JSON of `event` to `out`, exactly as [`write`] would: its own
/// fields and those of its (flattened) kind in one object. The kind's fields go
/// straight into that object under their static names, where serde's flattening would
/// pass them through a map (a key allocated per field).
pub(crate) fn write_event(event: &portcullis_core::Event, out: &mut Vec<u8>) -> R {
    // Destructured so that a field added to `Event` fails to compile here instead of
    // going unrecorded.
    let portcullis_core::Event { session, at, kind } = event;
    with_ctx(out, |c| {
        let mut object = Object::new(c);
        object.entry(Key::Borrowed("at"), at)?;
        object.entry(Key::Borrowed("session"), session)?;
        kind.serialize(Flatten {
            object: &mut object,
        })?;
        object.finish()
    })
}

/// What a write works with: the output and, reused from one write to the next on the
/// same thread, the entries of the objects being written and room to rearrange them.
#[derive(Default)]
struct Ctx {
    out: Vec<u8>,
    /// Entries of every open object, innermost last: an object's own start at its
    /// `base` and are dropped when it ends, so nesting uses the vector as a stack.
    entries: Vec<(Key, usize, usize)>,
    /// An unsorted object's written entries while they are put back in order.
    moved: Vec<u8>,
}

/// Largest scratch buffer kept for the next write: one huge event (a long statement, a
/// large body excerpt) does not pin its size on the writer thread for good.
const KEEP_SCRATCH: usize = 64 * 1024;

thread_local! {
    static CTX: std::cell::Cell<Ctx> = std::cell::Cell::new(Ctx::default());
}

/// Runs `f` on a context writing to `out`: the thread's own, taken out for the write and
/// put back after (its vectors already grown); a nested write meanwhile gets a fresh one.
fn with_ctx(out: &mut Vec<u8>, f: impl FnOnce(&mut Ctx) -> R) -> R {
    let mut c = CTX.try_with(std::cell::Cell::take).unwrap_or_default();
    c.entries.clear();
    c.out = std::mem::take(out);
    let result = f(&mut c);
    *out = std::mem::take(&mut c.out);
    c.entries.clear();
    if c.moved.capacity() > KEEP_SCRATCH {
        c.moved = Vec::new();
    }
    // Gone only while the thread exits; then the context is simply dropped.
    let _ = CTX.try_with(|cell| cell.set(c));
    result
}

/// Writes `s` as a JSON string: `"`, `\` and control characters escaped (`\b \f \n
/// \r \t` in short form, the others as `\u00XX` in lowercase hex), everything else as
/// is. serde_json escapes exactly these; this scans eight bytes at a time, since almost
/// no recorded string needs escaping at all.
fn write_str(out: &mut Vec<u8>, s: &str) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// Whether any byte of `w` is zero (exact as a yes/no answer).
    fn has_zero(w: u64) -> bool {
        w.wrapping_sub(ONES) & !w & HIGH != 0
    }
    /// Whether any byte of `w` needs escaping.
    fn needs_escape(w: u64) -> bool {
        // A byte below 0x20 (exact for a threshold up to 0x80), a quote, a backslash.
        w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0
            || has_zero(w ^ (ONES * u64::from(b'"')))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
    }
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut clean = 0; // bytes before this one are written or need no escaping
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes);
        if needs_escape(word) {
            for (i, b) in chunk.iter().enumerate() {
                escape_byte(out, bytes, &mut clean, at + i, *b);
            }
        }
        at += 8;
    }
    let rest = chunks.remainder();
    // The last bytes, padded with spaces (which need no escaping), take the same test.
    // Assembled in a register: a word stored bytewise and loaded whole would stall.
    let mut word = ONES * u64::from(b' ');
    for (i, b) in rest.iter().enumerate() {
        let shift = 8 * i as u32;
        word = (word & !(0xff << shift)) | (u64::from(*b) << shift);
    }
    if needs_escape(word) {
        for (i, b) in rest.iter().enumerate() {
            escape_byte(out, bytes, &mut clean, at + i, *b);
        }
    }
    out.extend_from_slice(bytes.get(clean..).unwrap_or_default());
    out.push(b'"');
}

/// Escapes byte `b` at `i` of `bytes` if it needs it, first writing the clean run before it.
fn escape_byte(out: &mut Vec<u8>, bytes: &[u8], clean: &mut usize, i: usize, b: u8) {
    let short: &[u8] = match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        0x08 => b"\\b",
        0x0c => b"\\f",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0..=0x1f => b"",
        _ => return,
    };
    out.extend_from_slice(bytes.get(*clean..i).unwrap_or_default());
    *clean = i + 1;
    if short.is_empty() {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(b"\\u00");
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    } else {
        out.extend_from_slice(short);
    }
}

/// Serializes an internally tagged struct variant (the event kind) into an enclosing
/// object: its tag and fields become entries of `object`. Anything else is an error.
struct Flatten<'o, 'a> {
    object: &'o mut Object<'a>,
}

fn not_flat<T>() -> R<T> {
    Err(ser::Error::custom(
        "an event kind must serialize as a struct (an internally tagged struct variant)",
    ))
}

impl ser::SerializeStruct for Flatten<'_, '_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> R {
        self.object.entry(Key::Borrowed(key), v)
    }
    fn end(self) -> R {
        Ok(())
    }
}

macro_rules! not_flat_scalar {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, _v: $t) -> R {
            not_flat()
        }
    )*};
}

impl<'o, 'a> ser::Serializer for Flatten<'o, 'a> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = ser::Impossible<(), serde_json::Error>;
    type SerializeTuple = ser::Impossible<(), serde_json::Error>;
    type SerializeTupleStruct = ser::Impossible<(), serde_json::Error>;
    type SerializeTupleVariant = ser::Impossible<(), serde_json::Error>;
    type SerializeMap = ser::Impossible<(), serde_json::Error>;
    type SerializeStruct = Flatten<'o, 'a>;
    type SerializeStructVariant = ser::Impossible<(), serde_json::Error>;

    not_flat_scalar!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16,
        serialize_i32: i32, serialize_i64: i64, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_f32: f32, serialize_f64: f64,
        serialize_char: char, serialize_str: &str, serialize_bytes: &[u8]);

    fn serialize_struct(self, _n: &'static str, _len: usize) -> R<Self> {
        Ok(self)
    }
    fn serialize_none(self) -> R {
        not_flat()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _v: &T) -> R {
        not_flat()
    }
    fn serialize_unit(self) -> R {
        not_flat()
    }
    fn serialize_unit_struct(self, _n: &'static str) -> R {
        not_flat()
    }
    fn serialize_unit_variant(self, _n: &'static str, _i: u32, _v: &'static str) -> R {
        not_flat()
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _n: &'static str, _v: &T) -> R {
        not_flat()
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _n: &'static str,
        _i: u32,
        _variant: &'static str,
        _v: &T,
    ) -> R {
        not_flat()
    }
    fn serialize_seq(self, _len: Option<usize>) -> R<Self::SerializeSeq> {
        not_flat()
    }
    fn serialize_tuple(self, _len: usize) -> R<Self::SerializeTuple> {
        not_flat()
    }
    fn serialize_tuple_struct(
        self,
        _n: &'static str,
        _len: usize,
    ) -> R<Self::SerializeTupleStruct> {
        not_flat()
    }
    fn serialize_tuple_variant(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        _len: usize,
    ) -> R<Self::SerializeTupleVariant> {
        not_flat()
    }
    fn serialize_map(self, _len: Option<usize>) -> R<Self::SerializeMap> {
        not_flat()
    }
    fn serialize_struct_variant(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        _len: usize,
    ) -> R<Self::SerializeStructVariant> {
        not_flat()
    }
}

/// Writes one JSON scalar the way serde_json does.
fn scalar<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> R {
    serde_json::to_writer(out, v)
}

struct Canonical<'a> {
    c: &'a mut Ctx,
}

/// An object being written in place: `{` is written at once and each `"key":value` entry
/// after it in arrival order; the context's entries from `base` on are this object's,
/// each with its unescaped key and byte range in the output. Most objects arrive already
/// sorted (maps are `BTreeMap`s, many structs declare their fields in order) and are then
/// complete as written; the others have their entries rearranged when they end.
struct Object<'a> {
    c: &'a mut Ctx,
    /// Where the first entry starts (just after the `{`).
    start: usize,
    /// This object's first entry in `c.entries`.
    base: usize,
    sorted: bool,
}

/// An object key: struct fields are static, map keys are owned.
type Key = std::borrow::Cow<'static, str>;

impl<'a> Object<'a> {
    fn new(c: &'a mut Ctx) -> Self {
        c.out.push(b'{');
        Self {
            start: c.out.len(),
            base: c.entries.len(),
            c,
            sorted: true,
        }
    }

    fn entry<T: Serialize + ?Sized>(&mut self, key: Key, value: &T) -> R {
        if let Some((last, _, _)) = self.c.entries.get(self.base..).and_then(<[_]>::last) {
            // Strictly increasing keys: a repeated key also takes the sorting path, which
            // keeps the later value.
            self.sorted &= key_before(last, &key);
            self.c.out.push(b',');
        }
        let start = self.c.out.len();
        write_str(&mut self.c.out, &key);
        self.c.out.push(b':');
        value.serialize(Canonical { c: &mut *self.c })?;
        let end = self.c.out.len();
        self.c.entries.push((key, start, end));
        Ok(())
    }

    fn finish(self) -> R {
        self.finish_into_parent().map(|_| ())
    }

    /// Closes the object, its entries sorted by key, and returns the context (a struct
    /// variant closes its wrapper there).
    fn finish_into_parent(self) -> R<&'a mut Ctx> {
        let Object {
            c,
            start,
            base,
            sorted,
        } = self;
        if !sorted {
            let Ctx {
                out,
                entries,
                moved,
            } = &mut *c;
            moved.clear();
            moved.extend_from_slice(out.get(start..).unwrap_or_default());
            out.truncate(start);
            let entries = entries.get_mut(base..).unwrap_or_default();
            // Stable: of two equal keys the later one wins, as in a map built by insertion.
            entries.sort_by(|a, b| key_order(&a.0, &b.0));
            let mut first = true;
            for (i, (key, s, e)) in entries.iter().enumerate() {
                if entries.get(i + 1).is_some_and(|next| next.0 == *key) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                let range = s.saturating_sub(start)..e.saturating_sub(start);
                out.extend_from_slice(moved.get(range).unwrap_or_default());
            }
        }
        c.entries.truncate(base);
        c.out.push(b'}');
        Ok(c)
    }
}

/// The order of two keys by their UTF-8 bytes, deciding on the first byte where it
/// differs (as it does for most pairs of field names) without a call to `memcmp`.
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// Whether key `a` sorts strictly before key `b`.
fn key_before(a: &str, b: &str) -> bool {
    key_order(a, b) == std::cmp::Ordering::Less
}

/// An array being written in place.
struct Array<'a> {
    c: &'a mut Ctx,
    first: bool,
    /// For tuple variants: close the wrapping object too.
    wrapped: bool,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        if !self.first {
            self.c.out.push(b',');
        }
        self.first = false;
        value.serialize(Canonical { c: &mut *self.c })
    }

    fn finish(self) -> R {
        self.c.out.push(b']');
        if self.wrapped {
            self.c.out.push(b'}');
        }
        Ok(())
    }
}

/// A struct variant: `{"Variant":{...}}`.
struct VariantObject<'a> {
    inner: Object<'a>,
}

/// A map key: must serialize as a string (numbers become their decimal text, as in
/// serde_json).
struct KeySer;

macro_rules! key_number {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> R<String> {
            Ok(v.to_string())
        }
    )*};
}

impl ser::Serializer for KeySer {
    type Ok = String;
    type Error = serde_json::Error;
    type SerializeSeq = ser::Impossible<String, serde_json::Error>;
    type SerializeTuple = ser::Impossible<String, serde_json::Error>;
    type SerializeTupleStruct = ser::Impossible<String, serde_json::Error>;
    type SerializeTupleVariant = ser::Impossible<String, serde_json::Error>;
    type SerializeMap = ser::Impossible<String, serde_json::Error>;
    type SerializeStruct = ser::Impossible<String, serde_json::Error>;
    type SerializeStructVariant = ser::Impossible<String, serde_json::Error>;

    fn serialize_str(self, v: &str) -> R<String> {
        Ok(v.to_owned())
    }
    fn serialize_char(self, v: char) -> R<String> {
        Ok(v.to_string())
    }
    fn serialize_bool(self, v: bool) -> R<String> {
        Ok(v.to_string())
    }
    key_number!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128);
    fn serialize_f32(self, _v: f32) -> R<String> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_f64(self, _v: f64) -> R<String> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_bytes(self, _v: &[u8]) -> R<String> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_none(self) -> R<String> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _v: &T) -> R<String> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_unit(self) -> R<String> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_unit_struct(self, _name: &'static str) -> R<String> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_unit_variant(self, _n: &'static str, _i: u32, variant: &'static str) -> R<String> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _n: &'static str, v: &T) -> R<String> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _n: &'static str,
        _i: u32,
        _variant: &'static str,
        _v: &T,
    ) -> R<String> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_seq(self, _len: Option<usize>) -> R<Self::SerializeSeq> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_tuple(self, _len: usize) -> R<Self::SerializeTuple> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_tuple_struct(
        self,
        _n: &'static str,
        _len: usize,
    ) -> R<Self::SerializeTupleStruct> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_tuple_variant(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        _len: usize,
    ) -> R<Self::SerializeTupleVariant> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_map(self, _len: Option<usize>) -> R<Self::SerializeMap> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_struct(self, _n: &'static str, _len: usize) -> R<Self::SerializeStruct> {
        Err(ser::Error::custom("key must be a string"))
    }
    fn serialize_struct_variant(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        _len: usize,
    ) -> R<Self::SerializeStructVariant> {
        Err(ser::Error::custom("key must be a string"))
    }
}

macro_rules! plain_scalar {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> R {
            scalar(&mut self.c.out, &v)
        }
    )*};
}

impl<'a> ser::Serializer for Canonical<'a> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = MapState<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = VariantObject<'a>;

    plain_scalar!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16,
        serialize_i32: i32, serialize_i64: i64, serialize_i128: i128, serialize_u8: u8,
        serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128,
        serialize_f32: f32, serialize_f64: f64, serialize_char: char);

    fn serialize_str(self, v: &str) -> R {
        write_str(&mut self.c.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> R {
        scalar(&mut self.c.out, v)
    }
    fn serialize_none(self) -> R {
        self.c.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> R {
        v.serialize(self)
    }
    fn serialize_unit(self) -> R {
        self.c.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> R {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _n: &'static str, _i: u32, variant: &'static str) -> R {
        write_str(&mut self.c.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _n: &'static str, v: &T) -> R {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _n: &'static str,
        _i: u32,
        variant: &'static str,
        v: &T,
    ) -> R {
        let mut o = Object::new(self.c);
        o.entry(Key::Borrowed(variant), v)?;
        o.finish()
    }
    fn serialize_seq(self, _len: Option<usize>) -> R<Array<'a>> {
        self.c.out.push(b'[');
        Ok(Array {
            c: self.c,
            first: true,
            wrapped: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> R<Array<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _n: &'static str, len: usize) -> R<Array<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _n: &'static str,
        _i: u32,
        variant: &'static str,
        _len: usize,
    ) -> R<Array<'a>> {
        self.c.out.push(b'{');
        write_str(&mut self.c.out, variant);
        self.c.out.extend_from_slice(b":[");
        Ok(Array {
            c: self.c,
            first: true,
            wrapped: true,
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> R<MapState<'a>> {
        Ok(MapState {
            object: Object::new(self.c),
            key: None,
        })
    }
    fn serialize_struct(self, _n: &'static str, _len: usize) -> R<Object<'a>> {
        Ok(Object::new(self.c))
    }
    fn serialize_struct_variant(
        self,
        _n: &'static str,
        _i: u32,
        variant: &'static str,
        _len: usize,
    ) -> R<VariantObject<'a>> {
        self.c.out.push(b'{');
        write_str(&mut self.c.out, variant);
        self.c.out.push(b':');
        Ok(VariantObject {
            inner: Object::new(self.c),
        })
    }
}

/// The four sequence-like serde traits, all writing elements of an [`Array`].
macro_rules! array_impl {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Array<'_> {
            type Ok = ();
            type Error = serde_json::Error;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> R {
                self.element(v)
            }
            fn end(self) -> R {
                self.finish()
            }
        }
    )*};
}

array_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// A map: keys arrive before their values.
pub(crate) struct MapState<'a> {
    object: Object<'a>,
    key: Option<Key>,
}

impl ser::SerializeMap for MapState<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> R {
        self.key = Some(Key::Owned(key.serialize(KeySer)?));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> R {
        let key = self
            .key
            .take()
            .ok_or_else(|| <serde_json::Error as ser::Error>::custom("map value without a key"))?;
        self.object.entry(key, v)
    }
    fn end(self) -> R {
        self.object.finish()
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> R {
        self.entry(Key::Borrowed(key), v)
    }
    fn end(self) -> R {
        self.finish()
    }
}

impl ser::SerializeStructVariant for VariantObject<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> R {
        self.inner.entry(Key::Borrowed(key), v)
    }
    fn end(self) -> R {
        let c = self.inner.finish_into_parent()?;
        c.out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::write_str;

    fn serde(s: &str) -> Vec<u8> {
        serde_json::to_vec(s).unwrap_or_default()
    }

    fn ours(s: &str) -> Vec<u8> {
        let mut out = b"prefix".to_vec();
        write_str(&mut out, s);
        out.split_off(6)
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_does() {
        // Every ASCII byte and a few multi-byte characters at every position of the
        // eight-byte scan, alone and inside longer runs.
        let mut specials: Vec<String> = (0u8..=0x7f).map(|b| char::from(b).to_string()).collect();
        specials.extend(["é", "€", "😀", "\u{2028}", "\u{7f}"].map(String::from));
        for special in &specials {
            for before in 0..17 {
                for after in [0, 1, 7, 8, 9] {
                    let s = format!("{}{special}{}", "a".repeat(before), "b".repeat(after));
                    assert_eq!(ours(&s), serde(&s), "{s:?}");
                }
            }
        }
        // Two escapes in one eight-byte word, or in neighbouring ones.
        for a in ["\"", "\\", "\n", "\u{1}", "é"] {
            for b in ["\"", "\u{1f}", "\t", "€"] {
                for gap in 0..10 {
                    for before in 0..9 {
                        let s = format!("{}{a}{}{b}x", "a".repeat(before), "c".repeat(gap));
                        assert_eq!(ours(&s), serde(&s), "{s:?}");
                    }
                }
            }
        }
        for s in [
            "",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
            "line\none\r\n\ttab \"quoted\" back\\slash \u{1}\u{1f}\u{8}\u{c}",
            "\"\"\"\"\"\"\"\"\"\\\\\\\\\\\\\\\\",
            "naïve café — 東京 \u{0}",
        ] {
            assert_eq!(ours(s), serde(s), "{s:?}");
        }
    }
}
