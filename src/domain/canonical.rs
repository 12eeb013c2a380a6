//! Canonical JSON (object keys sorted, no insignificant white space) written straight from
//! any `Serialize` value, without building a `serde_json::Value` first. Every write puts
//! its document, lots and movements into an audit event this way; going through `Value`
//! (a map and a string for every key and field, then a second pass to write them) was
//! 8% of the writer's time (docs/performance-history.md). The bytes are those of the plain walk
//! over `serde_json::to_value(x)` that defines canonical JSON (`audit::canonical_json_walked`,
//! test-only), which the tests hold it to.

use std::borrow::Cow;

use serde::ser::{self, Serialize};

type Error = serde_json::Error;

/// The canonical JSON of a value.
pub fn to_canonical<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(1024);
    value
        .serialize(Writer { out: &mut out })
        .expect("domain values serialize to JSON");
    String::from_utf8(out).expect("JSON is UTF-8")
}

fn scalar<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> Result<(), Error> {
    serde_json::to_writer(out, v)
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

/// An object being written: each member's value goes into `buf`, and the members are
/// written out in key order when it ends. A key met twice keeps its last value, as a
/// `serde_json::Map` would.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    buf: Vec<u8>,
    members: Vec<(Cow<'static, str>, std::ops::Range<usize>)>,
    key: Option<Cow<'static, str>>,
    /// Set for an enum's struct variant: the object is the value of `{"variant": …}`.
    variant: Option<&'static str>,
}

impl Object<'_> {
    fn value<T: Serialize + ?Sized>(
        &mut self,
        key: Cow<'static, str>,
        value: &T,
    ) -> Result<(), Error> {
        let start = self.buf.len();
        value.serialize(Writer { out: &mut self.buf })?;
        self.members.push((key, start..self.buf.len()));
        Ok(())
    }

    fn finish(mut self) -> Result<(), Error> {
        // Stable, so that of equal keys the last one written is last.
        self.members.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(v) = self.variant {
            self.out.push(b'{');
            scalar(self.out, v)?;
            self.out.push(b':');
        }
        self.out.push(b'{');
        let mut first = true;
        for (i, (key, range)) in self.members.iter().enumerate() {
            if self.members.get(i + 1).is_some_and(|next| next.0 == *key) {
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            scalar(self.out, key.as_ref())?;
            self.out.push(b':');
            self.out.extend_from_slice(&self.buf[range.clone()]);
        }
        self.out.push(b'}');
        if self.variant.is_some() {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// An array being written (also a tuple, or an enum's tuple variant's value).
struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    variant: bool,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Writer { out: self.out })
    }

    fn finish(self) -> Result<(), Error> {
        self.out.push(b']');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl<'a> Writer<'a> {
    fn object(self, variant: Option<&'static str>, len: Option<usize>) -> Object<'a> {
        Object {
            out: self.out,
            buf: Vec::with_capacity(256),
            members: Vec::with_capacity(len.unwrap_or(8)),
            key: None,
            variant,
        }
    }

    fn array(self, variant: Option<&'static str>) -> Result<Array<'a>, Error> {
        if let Some(v) = variant {
            self.out.push(b'{');
            scalar(self.out, v)?;
            self.out.push(b':');
        }
        self.out.push(b'[');
        Ok(Array {
            out: self.out,
            first: true,
            variant: variant.is_some(),
        })
    }
}

macro_rules! scalars {
    ($($method:ident: $t:ty),*) => {
        $(fn $method(self, v: $t) -> Result<(), Error> {
            scalar(self.out, &v)
        })*
    };
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    scalars!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_f64: f64,
        serialize_char: char
    );

    // As a `Value` holds it: widened to f64.
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        scalar(self.out, &f64::from(v))
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        scalar(self.out, v)
    }

    // Dates, times and decimals serialize through `Display`: written into one string sized
    // for them, where serde's default `to_string` grows a new one a piece at a time (1.4 %
    // of the SQLite writer's samples, perf at 1M, most of it reallocation).
    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<(), Error> {
        use std::fmt::Write;
        let mut text = String::with_capacity(48);
        write!(text, "{value}").map_err(ser::Error::custom)?;
        scalar(self.out, text.as_str())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        scalar(self.out, v)
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.serialize_none()
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_none()
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        scalar(self.out, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.out.push(b'{');
        scalar(self.out, variant)?;
        self.out.push(b':');
        value.serialize(Writer { out: self.out })?;
        self.out.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, Error> {
        self.array(None)
    }

    fn serialize_tuple(self, _: usize) -> Result<Array<'a>, Error> {
        self.array(None)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Array<'a>, Error> {
        self.array(None)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Array<'a>, Error> {
        self.array(Some(variant))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, Error> {
        Ok(self.object(None, len))
    }

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Object<'a>, Error> {
        Ok(self.object(None, Some(len)))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, Error> {
        Ok(self.object(Some(variant), Some(len)))
    }
}

macro_rules! array_impl {
    ($($trait:ident :: $method:ident),*) => {
        $(impl ser::$trait for Array<'_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }
            fn end(self) -> Result<(), Error> {
                self.finish()
            }
        })*
    };
}

array_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        // A JSON object's key is a string; numbers and bools are written out, as
        // serde_json does.
        self.key = Some(Cow::Owned(match serde_json::to_value(key)? {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return Err(ser::Error::custom("a map key must be a string or a number")),
        }));
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self.key.take().expect("serde gives a key before its value");
        self.value(key, value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

macro_rules! struct_impl {
    ($($trait:ident),*) => {
        $(impl ser::$trait for Object<'_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.value(Cow::Borrowed(key), value)
            }
            fn end(self) -> Result<(), Error> {
                self.finish()
            }
        })*
    };
}

struct_impl!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Serialize;
    use serde_json::json;

    use super::to_canonical;
    use crate::domain::audit::canonical_json_walked;

    fn same<T: Serialize>(v: &T) {
        let through_value = canonical_json_walked(&serde_json::to_value(v).unwrap());
        assert_eq!(to_canonical(v), through_value);
    }

    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Warehouse,
        Pair(i32, String),
        Wrapped(Option<u8>),
        Shaped { z: bool, a: f32 },
    }

    #[derive(Serialize)]
    struct Inner {
        zeta: &'static str,
        alpha: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<i64>,
    }

    #[derive(Serialize)]
    struct Outer {
        name: String,
        kinds: Vec<Kind>,
        #[serde(flatten)]
        inner: Inner,
        #[serde(rename = "type")]
        kind: Kind,
        numbered: BTreeMap<i32, &'static str>,
        hashed: HashMap<String, u64>,
        unit: (),
        tuple: (u8, char, &'static [u8]),
        nested: serde_json::Value,
    }

    #[test]
    fn domain_shapes_come_out_as_through_a_value() {
        same(&Outer {
            name: "曲阜市 \"第一\" 社区\n\u{1}".into(),
            kinds: vec![
                Kind::Warehouse,
                Kind::Pair(-3, "x".into()),
                Kind::Wrapped(None),
                Kind::Wrapped(Some(7)),
                Kind::Shaped { z: true, a: 0.1 },
            ],
            inner: Inner {
                zeta: "z",
                alpha: None,
                skipped: None,
            },
            kind: Kind::Shaped { z: false, a: 2.5 },
            numbered: [(10, "ten"), (2, "two"), (-1, "minus")].into(),
            hashed: [
                ("b".to_string(), 2),
                ("a".to_string(), 1),
                ("".to_string(), 0),
            ]
            .into(),
            unit: (),
            tuple: (255, '口', b"\x00\xff"),
            nested: json!({"b": [1, {"d": null, "c": "e"}], "a": 1.5, "": true}),
        });
    }
}
