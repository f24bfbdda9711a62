//! A small, deterministic value conforming to a JSON schema: the arguments of the mock's tool calls and its
//! structured answers. It covers what function parameters and structured outputs use (JSON Schema as OpenAI's
//! structured outputs accept it, platform.openai.com/docs/guides/structured-outputs#supported-schemas, and
//! Anthropic's tool `input_schema`): objects, arrays, strings (with common formats and length bounds), numbers,
//! integers (with bounds), booleans, null, `enum`, `const`, `anyOf`/`oneOf`/`allOf`, and local `$ref`s into
//! `$defs` or `definitions` (pydantic's nested models). Patterns are not honoured.

use serde_json::{Map, Value};

/// Below this depth every property and at least one array item is produced; from it on only what the schema
/// requires, so that recursive schemas (a tree's children) end.
const FULL_DEPTH: u32 = 4;
/// A schema that requires its own recursion cannot be satisfied; it gets `null` here.
const MAX_DEPTH: u32 = 16;

/// A value conforming to `schema`.
pub(super) fn example(schema: &Value) -> Value {
    value(schema, schema, 0)
}

fn value(s: &Value, root: &Value, depth: u32) -> Value {
    let Some(o) = s.as_object() else {
        // `true` (or any non-object) accepts anything.
        return Value::String("mock".into());
    };
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    if let Some(target) = o
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| resolve(root, r))
    {
        return value(target, root, depth + 1);
    }
    if let Some(c) = o.get("const") {
        return c.clone();
    }
    if let Some(first) = o
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = o.get(key).and_then(Value::as_array) {
            let null = |v: &&Value| v.get("type").and_then(Value::as_str) == Some("null");
            let pick = if depth >= FULL_DEPTH {
                options.iter().find(null)
            } else {
                options.iter().find(|v| !null(v))
            };
            if let Some(option) = pick.or_else(|| options.first()) {
                return value(option, root, depth + 1);
            }
        }
    }
    if let Some(first) = o
        .get("allOf")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return value(first, root, depth + 1);
    }
    match type_of(o, depth) {
        Some("object") => object(o, root, depth),
        Some("array") => array(o, root, depth),
        Some("integer") => integer(o),
        Some("number") => number(o),
        Some("boolean") => Value::Bool(true),
        Some("null") => Value::Null,
        Some("string") => string(o),
        _ if o.contains_key("properties") => object(o, root, depth),
        _ if o.contains_key("items") => array(o, root, depth),
        _ => string(o),
    }
}

/// The schema's type; of several (`["string", "null"]`), the first that is not null, or null when deep.
fn type_of(o: &Map<String, Value>, depth: u32) -> Option<&str> {
    match o.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(ts) => {
            let names = || ts.iter().filter_map(Value::as_str);
            if depth >= FULL_DEPTH && names().any(|t| t == "null") {
                return Some("null");
            }
            names().find(|&t| t != "null").or_else(|| names().next())
        }
        _ => None,
    }
}

/// A local reference: `#`, `#/$defs/Name`, `#/definitions/Name` (a JSON pointer into the root schema).
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    root.pointer(reference.strip_prefix('#')?)
}

fn object(o: &Map<String, Value>, root: &Value, depth: u32) -> Value {
    let required: Vec<&str> = o
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = Map::new();
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            if depth < FULL_DEPTH || required.contains(&name.as_str()) {
                out.insert(name.clone(), value(prop, root, depth + 1));
            }
        }
    }
    for name in required {
        if !out.contains_key(name) {
            out.insert(name.to_string(), Value::String("mock".into()));
        }
    }
    Value::Object(out)
}

fn array(o: &Map<String, Value>, root: &Value, depth: u32) -> Value {
    let bound = |k: &str| o.get(k).and_then(Value::as_u64);
    if let Some(prefix) = o.get("prefixItems").and_then(Value::as_array) {
        return Value::Array(prefix.iter().map(|p| value(p, root, depth + 1)).collect());
    }
    let least = bound("minItems").unwrap_or(0);
    let wanted = if depth < FULL_DEPTH {
        least.max(1)
    } else {
        least
    };
    let count = bound("maxItems").map_or(wanted, |m| wanted.min(m));
    let item = o.get("items").cloned().unwrap_or(Value::Bool(true));
    Value::Array((0..count).map(|_| value(&item, root, depth + 1)).collect())
}

// A schema's bounds are JSON numbers (floats), and the value only has to fall within them; no money here.
#[allow(clippy::float_arithmetic)]
fn integer(o: &Map<String, Value>) -> Value {
    let num = |k: &str| o.get(k).and_then(Value::as_f64);
    let low = num("minimum")
        .map(f64::ceil)
        .or_else(|| num("exclusiveMinimum").map(|m| m.floor() + 1.0))
        .unwrap_or(1.0);
    let high = num("maximum")
        .map(f64::floor)
        .or_else(|| num("exclusiveMaximum").map(|m| m.ceil() - 1.0));
    let mut n = high.map_or(low, |h| low.min(h)) as i64;
    if let Some(step) = o
        .get("multipleOf")
        .and_then(Value::as_i64)
        .filter(|&s| s > 0)
    {
        n = n.div_euclid(step) * step + if n.rem_euclid(step) == 0 { 0 } else { step };
    }
    Value::from(n)
}

#[allow(clippy::float_arithmetic)]
fn number(o: &Map<String, Value>) -> Value {
    let num = |k: &str| o.get(k).and_then(Value::as_f64);
    let low = num("minimum")
        .or_else(|| num("exclusiveMinimum").map(|m| m + 0.5))
        .unwrap_or(1.5);
    let high = num("maximum").or_else(|| num("exclusiveMaximum").map(|m| m - 0.5));
    Value::from(high.map_or(low, |h| low.min(h)))
}

fn string(o: &Map<String, Value>) -> Value {
    let text = match o.get("format").and_then(Value::as_str) {
        Some("date-time") => "2026-01-01T00:00:00Z",
        Some("date") => "2026-01-01",
        Some("time") => "12:00:00",
        Some("duration") => "P1D",
        Some("email") => "mock@example.com",
        Some("hostname") => "example.com",
        Some("ipv4") => "192.0.2.1",
        Some("ipv6") => "2001:db8::1",
        Some("uuid") => "00000000-0000-4000-8000-000000000000",
        Some("uri") => "https://example.com/mock",
        _ => "mock",
    };
    let mut s = text.to_string();
    let bound = |k: &str| o.get(k).and_then(Value::as_u64).map(|n| n as usize);
    if let Some(min) = bound("minLength") {
        while s.chars().count() < min {
            s.push('x');
        }
    }
    if let Some(max) = bound("maxLength") {
        s = s.chars().take(max).collect();
    }
    Value::String(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fills_what_each_kind_of_schema_asks() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": { "type": "string", "minLength": 6 },
                "unit": { "type": "string", "enum": ["celsius", "fahrenheit"] },
                "days": { "type": "integer", "minimum": 3, "maximum": 10 },
                "ratio": { "type": "number", "exclusiveMaximum": 1 },
                "exact": { "type": "boolean" },
                "tags": { "type": "array", "items": { "type": "string", "maxLength": 2 }, "minItems": 2 },
                "when": { "type": "string", "format": "date-time" },
                "note": { "type": ["string", "null"] },
                "kind": { "const": "forecast" },
                "place": { "$ref": "#/$defs/Place" },
                "maybe": { "anyOf": [{ "type": "null" }, { "type": "integer" }] },
            },
            "required": ["city", "unit", "days"],
            "additionalProperties": false,
            "$defs": { "Place": { "type": "object", "properties": { "lat": { "type": "number" } }, "required": ["lat"] } },
        });
        assert_eq!(
            example(&schema),
            json!({
                "city": "mockxx", "unit": "celsius", "days": 3, "ratio": 0.5, "exact": true, "tags": ["mo", "mo"],
                "when": "2026-01-01T00:00:00Z", "note": "mock", "kind": "forecast", "place": { "lat": 1.5 },
                "maybe": 1,
            })
        );
    }

    #[test]
    fn recursive_schemas_end() {
        let tree = json!({
            "$ref": "#/$defs/Node",
            "$defs": { "Node": { "type": "object", "required": ["name", "children"], "properties": {
                "name": { "type": "string" },
                "children": { "type": "array", "items": { "$ref": "#/$defs/Node" } } } } },
        });
        let v = example(&tree);
        let mut node = &v;
        let mut levels = 0;
        while let Some(child) = node["children"].get(0) {
            node = child;
            levels += 1;
        }
        assert!(levels > 0 && levels < 8, "{v}");
        assert_eq!(node["children"], json!([]));
        assert_eq!(
            example(&json!({ "type": "integer", "multipleOf": 5 })),
            json!(5)
        );
        assert_eq!(example(&json!({})), json!("mock"));
    }
}
