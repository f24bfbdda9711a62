//! The configuration reference is checked against the code: every setting the config file accepts (found by
//! walking `Config`'s own `Deserialize` implementation, so a new field cannot be missed) must be documented in
//! `docs/configuration.md`, and every section must appear in `spendgate.example.toml`, which must parse.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use spendgate::config::Config;

/// A deserializer that answers every struct with each of its fields once, and every other value with a
/// harmless placeholder, recording the dotted path of each field it hands out.
struct Walker<'a> {
    path: String,
    seen: &'a RefCell<BTreeSet<String>>,
}

#[derive(Debug)]
struct Stop(String);

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Stop(msg.to_string())
    }
}

struct Fields<'a> {
    walker: &'a Walker<'a>,
    fields: std::slice::Iter<'static, &'static str>,
    current: &'static str,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match self.fields.next() {
            Some(f) => {
                self.current = f;
                seed.deserialize(de::value::StrDeserializer::new(f))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        let path = if self.walker.path.is_empty() {
            self.current.to_string()
        } else {
            format!("{}.{}", self.walker.path, self.current)
        };
        self.walker.seen.borrow_mut().insert(path.clone());
        seed.deserialize(Walker {
            path,
            seen: self.walker.seen,
        })
    }
}

/// One element, so that the fields of a list's items are walked too.
struct OneElement<'a> {
    walker: Option<Walker<'a>>,
}

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Stop> {
        match self.walker.take() {
            Some(w) => seed.deserialize(w).map(Some),
            None => Ok(None),
        }
    }
}

impl<'de> Deserializer<'de> for Walker<'_> {
    type Error = Stop;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_map(Fields {
            walker: &self,
            fields: fields.iter(),
            current: "",
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_seq(OneElement { walker: Some(self) })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_map(de::value::MapDeserializer::<
            std::iter::Empty<(String, String)>,
            Stop,
        >::new(std::iter::empty()))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_bool(false)
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        // Money and prices are read from strings; "1" parses as any of them.
        visitor.visit_str("1")
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_enum(de::value::StrDeserializer::<Stop>::new(variants[0]))
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_u8(1)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_u16(1)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_u32(1)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_u64(1)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_i32(1)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_i64(1)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i128 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        newtype_struct tuple tuple_struct identifier ignored_any
    }
}

/// Every setting's dotted path (`listen`, `replicas.lease_ttl_secs`, `providers.base_url`, ...).
fn settings() -> BTreeSet<String> {
    let seen = RefCell::new(BTreeSet::new());
    // The placeholders need not make a valid config (validation may refuse them): only the walk matters.
    let _ = <Config as serde::Deserialize>::deserialize(Walker {
        path: String::new(),
        seen: &seen,
    });
    seen.into_inner()
}

#[test]
fn every_setting_is_documented_and_the_example_parses() {
    let settings = settings();
    assert!(settings.contains("listen") && settings.contains("providers.base_url"));
    assert!(settings.len() > 40, "{settings:?}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
    // Every leaf setting (a section such as `pricing` is the parent of its settings, not one itself).
    let is_parent = |s: &str| settings.iter().any(|o| o.starts_with(&format!("{s}.")));
    let missing: Vec<&String> = settings
        .iter()
        .filter(|s| !is_parent(s) && !doc.contains(&format!("`{s}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not describe these settings (write each as `section.key`): {missing:?}"
    );
    let example = std::fs::read_to_string(root.join("spendgate.example.toml")).unwrap();
    Config::parse(&example).unwrap();
    for section in settings
        .iter()
        .filter_map(|s| s.split_once('.').map(|p| p.0))
    {
        assert!(
            example.contains(&format!("[{section}]"))
                || example.contains(&format!("[[{section}]]")),
            "spendgate.example.toml has no [{section}] section"
        );
    }
}
