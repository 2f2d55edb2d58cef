//! A serde serializer that writes canonical JSON directly (object keys sorted by their
//! UTF-8 bytes, compact), without building a `serde_json::Value` first.
//!
//! Objects are written in place; one whose keys did not arrive in sorted order has its
//! entries rearranged when it ends. Scalars and strings are written by serde_json itself,
//! so escaping and number formatting are exactly those of the `Value` path
//! ([`crate::record::canonicalize`]), which tests compare against.

use serde::ser::{self, Serialize};

/// serde_json's error serves: it is what the scalars are written with, and it is a
/// `serde::ser::Error`.
type R<T = ()> = Result<T, serde_json::Error>;

/// Appends the canonical JSON of `value` to `out` (what [`write_event`] must equal for
/// events; the recorder itself writes events only).
#[cfg(test)]
pub(crate) fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> R {
    value.serialize(Canonical { out })
}

/// Appends the canonical JSON of `event` to `out`, exactly as [`write`] would: its own
/// fields and those of its (flattened) kind in one object. The kind's fields go
/// straight into that object under their static names, where serde's flattening would
/// pass them through a map (a key allocated per field).
pub(crate) fn write_event(event: &portcullis_core::Event, out: &mut Vec<u8>) -> R {
    // Destructured so that a field added to `Event` fails to compile here instead of
    // going unrecorded.
    let portcullis_core::Event { session, at, kind } = event;
    let mut object = Object::new(out, Some(8));
    object.entry(Key::Borrowed("at"), at)?;
    object.entry(Key::Borrowed("session"), session)?;
    kind.serialize(Flatten {
        object: &mut object,
    })?;
    object.finish()
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
    out: &'a mut Vec<u8>,
}

/// An object being written in place: `{` is written at once and each `"key":value` entry
/// after it in arrival order; `entries` has each entry's unescaped key and byte range in
/// `out`. Most objects arrive already sorted (maps are `BTreeMap`s, many structs declare
/// their fields in order) and are then complete as written; the others have their entries
/// rearranged when they end.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    /// Where the first entry starts (just after the `{`).
    start: usize,
    entries: Vec<(Key, usize, usize)>,
    sorted: bool,
}

/// An object key: struct fields are static, map keys are owned.
type Key = std::borrow::Cow<'static, str>;

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>, len: Option<usize>) -> Self {
        out.push(b'{');
        let start = out.len();
        Self {
            out,
            start,
            entries: Vec::with_capacity(len.unwrap_or(8)),
            sorted: true,
        }
    }

    fn entry<T: Serialize + ?Sized>(&mut self, key: Key, value: &T) -> R {
        if let Some((last, _, _)) = self.entries.last() {
            // Strictly increasing keys: a repeated key also takes the sorting path, which
            // keeps the later value.
            self.sorted &= last.as_bytes() < key.as_bytes();
            self.out.push(b',');
        }
        let start = self.out.len();
        scalar(self.out, key.as_ref())?;
        self.out.push(b':');
        value.serialize(Canonical {
            out: &mut *self.out,
        })?;
        self.entries.push((key, start, self.out.len()));
        Ok(())
    }

    fn finish(self) -> R {
        self.finish_into_parent().map(|_| ())
    }
}

/// An array being written in place.
struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// For tuple variants: close the wrapping object too.
    wrapped: bool,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canonical {
            out: &mut *self.out,
        })
    }

    fn finish(self) -> R {
        self.out.push(b']');
        if self.wrapped {
            self.out.push(b'}');
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
            scalar(self.out, &v)
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
        scalar(self.out, v)
    }
    fn serialize_bytes(self, v: &[u8]) -> R {
        scalar(self.out, v)
    }
    fn serialize_none(self) -> R {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> R {
        v.serialize(self)
    }
    fn serialize_unit(self) -> R {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> R {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _n: &'static str, _i: u32, variant: &'static str) -> R {
        scalar(self.out, variant)
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
        let mut o = Object::new(self.out, Some(1));
        o.entry(Key::Borrowed(variant), v)?;
        o.finish()
    }
    fn serialize_seq(self, _len: Option<usize>) -> R<Array<'a>> {
        self.out.push(b'[');
        Ok(Array {
            out: self.out,
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
        self.out.push(b'{');
        scalar(self.out, variant)?;
        self.out.extend_from_slice(b":[");
        Ok(Array {
            out: self.out,
            first: true,
            wrapped: true,
        })
    }
    fn serialize_map(self, len: Option<usize>) -> R<MapState<'a>> {
        Ok(MapState {
            object: Object::new(self.out, len),
            key: None,
        })
    }
    fn serialize_struct(self, _n: &'static str, len: usize) -> R<Object<'a>> {
        Ok(Object::new(self.out, Some(len)))
    }
    fn serialize_struct_variant(
        self,
        _n: &'static str,
        _i: u32,
        variant: &'static str,
        len: usize,
    ) -> R<VariantObject<'a>> {
        self.out.push(b'{');
        scalar(self.out, variant)?;
        self.out.push(b':');
        Ok(VariantObject {
            inner: Object::new(self.out, Some(len)),
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
        let out_ptr = self.inner.finish_into_parent()?;
        out_ptr.push(b'}');
        Ok(())
    }
}

impl<'a> Object<'a> {
    /// Writes the object, its entries sorted by key, into the parent buffer, and returns
    /// the parent (a struct variant closes its wrapper there).
    fn finish_into_parent(self) -> R<&'a mut Vec<u8>> {
        let Object {
            out,
            start,
            mut entries,
            sorted,
        } = self;
        if !sorted {
            let written = out.split_off(start);
            // Stable: of two equal keys the later one wins, as in a map built by insertion.
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
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
                out.extend_from_slice(written.get(range).unwrap_or_default());
            }
        }
        out.push(b'}');
        Ok(out)
    }
}
