//! The document's examples: every operation's JSON request body and JSON success answer has
//! one (on the media type, on the schema, through `$ref`, or on every property), and each one
//! fits the schema it illustrates, checked by the small JSON Schema subset the document uses.

use super::ApiDoc;
use serde_json::{Map, Value, json};
use utoipa::OpenApi;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

#[test]
fn every_json_body_has_an_example_that_fits_its_schema() {
    let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    let (mut missing, mut misfits, mut checked) = (Vec::new(), Vec::new(), 0);
    for (path, item) in object(&doc["paths"]) {
        for (method, op) in object(item) {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let operation = format!("{} {path}", method.to_uppercase());
            let answers = object(&op["responses"])
                .filter(|(status, _)| status.starts_with('2'))
                .map(|(status, answer)| (status.as_str(), answer));
            let bodies = op.get("requestBody").map(|b| ("request", b));
            for (which, body) in bodies.into_iter().chain(answers) {
                for (media, content) in object(&resolve(&doc, body)["content"]) {
                    if !is_json(media) {
                        continue;
                    }
                    checked += 1;
                    let schema = &content["schema"];
                    let Some(example) = media_example(content).or_else(|| example_of(&doc, schema))
                    else {
                        missing.push(format!("{operation} ({which}, {media})"));
                        continue;
                    };
                    let mut errors = Vec::new();
                    validate(&doc, schema, &example, "$", &mut errors);
                    misfits.extend(errors.iter().map(|e| format!("{operation} ({which}): {e}")));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} JSON bodies found");
    assert!(
        missing.is_empty() && misfits.is_empty(),
        "JSON bodies without an example:\n{}\n\nexamples that do not fit their schema:\n{}",
        missing.join("\n"),
        misfits.join("\n")
    );
}

#[test]
fn the_check_finds_missing_examples_and_misfits() {
    let doc = json!({"components": {"schemas": {
        "Seat": {"type": "object", "required": ["id", "row"], "additionalProperties": false,
            "properties": {"id": {"type": "string", "format": "uuid"},
                "row": {"type": "integer", "minimum": 1}}},
        "Bare": {"type": "object", "properties": {"id": {"type": "string"}}},
    }}});
    let seat = json!({"$ref": "#/components/schemas/Seat"});
    assert_eq!(
        example_of(&doc, &json!({"$ref": "#/components/schemas/Bare"})),
        None
    );
    let errors = |value: Value| {
        let mut errors = Vec::new();
        validate(&doc, &seat, &value, "$", &mut errors);
        errors
    };
    assert!(errors(json!({"id": "9b2f4c1e-0d1a-4f7e-9a55-3c2b1d0e8f71", "row": 3})).is_empty());
    assert_eq!(
        errors(json!({"id": "9b2f4c1e-0d1a-4f7e-9a55-3c2b1d0e8f71"})).len(),
        1
    );
    assert_eq!(errors(json!({"id": "seat-1", "row": 0})).len(), 2);
    assert_eq!(
        errors(json!({"id": "9b2f4c1e-0d1a-4f7e-9a55-3c2b1d0e8f71", "row": 3, "x": 1})).len(),
        1
    );
    assert!(matches_pattern("^(entry|exit)$", "exit"));
    assert!(!matches_pattern("^(entry|exit)$", "exits"));
    assert!(matches_pattern("^[A-Za-z0-9_-]{4,32}$", "SPRING-25"));
    assert!(!matches_pattern("^[A-Za-z0-9_-]{4,32}$", "NO!"));
}

/// The entries of a JSON object (none for anything else).
fn object(value: &Value) -> impl Iterator<Item = (&String, &Value)> {
    value.as_object().into_iter().flatten()
}

fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json")
}

/// A `$ref` resolved in the document (anything else as it is).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = r.strip_prefix('#').and_then(|p| doc.pointer(p));
            resolve(doc, target.unwrap_or_else(|| panic!("dangling $ref {r}")))
        }
        None => value,
    }
}

fn media_example(content: &Value) -> Option<Value> {
    content.get("example").cloned().or_else(|| {
        let examples = content.get("examples")?.as_object()?;
        examples.values().next()?.get("value").cloned()
    })
}

/// The schema's own example, or one assembled from its parts (items, the non-null choice, or
/// every property); `None` when some part has none.
fn example_of(doc: &Value, schema: &Value) -> Option<Value> {
    let schema = resolve(doc, schema);
    if let Some(example) = schema.get("example") {
        return Some(example.clone());
    }
    if let Some(example) = schema.get("examples").and_then(|e| e.as_array()?.first()) {
        return Some(example.clone());
    }
    if let Some(items) = schema.get("items") {
        return example_of(doc, items).map(|item| json!([item]));
    }
    if let Some(choices) = schema.get("oneOf").or_else(|| schema.get("anyOf")) {
        let choices = choices.as_array()?.iter();
        return choices
            .filter(|c| c["type"] != "null")
            .find_map(|c| example_of(doc, c));
    }
    let properties = schema.get("properties")?.as_object()?;
    let example = properties
        .iter()
        .map(|(name, property)| Some((name.clone(), example_of(doc, property)?)))
        .collect::<Option<Map<_, _>>>()?;
    Some(Value::Object(example))
}

/// Appends to `errors` each way `value` (at `at`) breaks `schema`.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate(doc, part, value, at, errors);
    }
    for keyword in ["oneOf", "anyOf"] {
        let Some(choices) = schema.get(keyword).and_then(Value::as_array) else {
            continue;
        };
        let fits = choices.iter().filter(|c| fits(doc, c, value)).count();
        if fits == 0 || (keyword == "oneOf" && fits > 1) {
            errors.push(format!(
                "{at}: {value} fits {fits} of the {keyword} choices"
            ));
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::Array(types) => types.iter().filter_map(Value::as_str).collect(),
            other => other.as_str().into_iter().collect(),
        };
        if !types.iter().any(|t| has_type(value, t)) {
            return errors.push(format!("{at}: {value} is not {}", types.join(" or ")));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    match value {
        Value::String(s) => validate_string(schema, s, at, errors),
        Value::Number(n) => {
            let n = n.as_f64().unwrap_or(f64::NAN);
            if schema
                .get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n < m)
            {
                errors.push(format!("{at}: {n} is below the minimum"));
            }
            if schema
                .get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n > m)
            {
                errors.push(format!("{at}: {n} is above the maximum"));
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if schema
                .get("minItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| len < m)
                || schema
                    .get("maxItems")
                    .and_then(Value::as_u64)
                    .is_some_and(|m| len > m)
            {
                errors.push(format!("{at}: {len} items is out of bounds"));
            }
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    validate(doc, item, v, &format!("{at}[{i}]"), errors);
                }
            }
        }
        Value::Object(map) => validate_object(doc, schema, map, at, errors),
        Value::Null | Value::Bool(_) => {}
    }
}

fn fits(doc: &Value, schema: &Value, value: &Value) -> bool {
    let mut errors = Vec::new();
    validate(doc, schema, value, "", &mut errors);
    errors.is_empty()
}

fn validate_object(
    doc: &Value,
    schema: &Value,
    map: &Map<String, Value>,
    at: &str,
    errors: &mut Vec<String>,
) {
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = name.as_str()
            && !map.contains_key(name)
        {
            errors.push(format!("{at}: required `{name}` is missing"));
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    for (name, value) in map {
        let at = format!("{at}.{name}");
        match (
            properties.and_then(|p| p.get(name)),
            schema.get("additionalProperties"),
        ) {
            (Some(property), _) => validate(doc, property, value, &at, errors),
            (None, Some(Value::Bool(true))) => {}
            (None, Some(extra @ Value::Object(_))) => validate(doc, extra, value, &at, errors),
            // Not in the schema: a misspelt name, or a property the type does not have.
            (None, _) if properties.is_some() => errors.push(format!("{at}: not in the schema")),
            (None, _) => {}
        }
    }
}

fn validate_string(schema: &Value, s: &str, at: &str, errors: &mut Vec<String>) {
    let len = s.chars().count() as u64;
    if schema
        .get("minLength")
        .and_then(Value::as_u64)
        .is_some_and(|m| len < m)
        || schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len > m)
    {
        errors.push(format!("{at}: length {len} is out of bounds"));
    }
    let well_formed = match schema.get("format").and_then(Value::as_str) {
        Some("uuid") => uuid::Uuid::parse_str(s).is_ok(),
        Some("date-time") => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        _ => true,
    };
    if !well_formed {
        errors.push(format!(
            "{at}: {s:?} does not have the format {}",
            schema["format"]
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && !matches_pattern(pattern, s)
    {
        errors.push(format!("{at}: {s:?} does not match {pattern}"));
    }
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown JSON Schema type {other}"),
    }
}

/// The pattern shapes the document uses (no regex engine among the dependencies):
/// `^(a|b|c)$` and `^literal[class]{min,max}$` (the literal may be empty, and has no special
/// characters). Any other shape stops the test, to be taught here.
fn matches_pattern(pattern: &str, s: &str) -> bool {
    let body = pattern
        .strip_prefix('^')
        .and_then(|p| p.strip_suffix('$'))
        .unwrap_or_else(|| panic!("unanchored pattern {pattern}"));
    if let Some(choices) = body.strip_prefix('(').and_then(|b| b.strip_suffix(')')) {
        return choices.split('|').any(|c| c == s);
    }
    let literal = &body[..body.find('[').unwrap_or(0)];
    assert!(
        literal.chars().all(|c| c.is_alphanumeric() || c == '#'),
        "teach the example check the pattern {pattern}"
    );
    let Some(s) = s.strip_prefix(literal) else {
        return false;
    };
    let body = &body[literal.len()..];
    let (class, counts) = body
        .strip_prefix('[')
        .and_then(|b| b.split_once("]{"))
        .and_then(|(class, rest)| Some((class, rest.strip_suffix('}')?)))
        .unwrap_or_else(|| panic!("teach the example check the pattern {pattern}"));
    let (min, max) = counts.split_once(',').unwrap_or((counts, counts));
    let (min, max): (usize, usize) = (min.parse().unwrap(), max.parse().unwrap());
    let class: Vec<char> = class.chars().collect();
    let in_class = |c: char| {
        let mut i = 0;
        while i < class.len() {
            if i + 2 < class.len() && class[i + 1] == '-' {
                if (class[i]..=class[i + 2]).contains(&c) {
                    return true;
                }
                i += 3;
            } else {
                if class[i] == c {
                    return true;
                }
                i += 1;
            }
        }
        false
    };
    (min..=max).contains(&s.chars().count()) && s.chars().all(in_class)
}
