//! Structural-schema handling of custom resources on write: pruning of unknown fields, dropping
//! of non-nullable nulls, defaulting, then validation, in that order (as described in the
//! Kubernetes documentation "Extend the Kubernetes API with CustomResourceDefinitions", sections
//! "Field pruning", "Defaulting" and "Validation").

use serde_json::{Map, Value};

/// One validation failure, rendered like the API server's `field.Error`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FieldError {
    /// Field path, e.g. `spec.title`.
    pub field: String,
    /// `StatusCause.reason`, e.g. `FieldValueInvalid`.
    pub reason: &'static str,
    /// The message after the field path, e.g. `Required value`.
    pub detail: String,
}

impl FieldError {
    pub(crate) fn new(field: &str, reason: &'static str, detail: String) -> Self {
        Self {
            field: field.to_string(),
            reason,
            detail,
        }
    }

    /// `field: detail`, the form used in the Status message.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.detail)
    }
}

/// Prunes, defaults and validates a whole custom object against its version's
/// `openAPIV3Schema`. `apiVersion`, `kind` and `metadata` are never pruned.
pub(crate) fn process(obj: &mut Value, schema: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(map) = obj.as_object_mut() else {
        errors.push(FieldError::new(
            "<root>",
            "FieldValueInvalid",
            "must be an object".into(),
        ));
        return errors;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    let preserve = preserves_unknown(schema);
    if !preserve {
        map.retain(|k, _| {
            matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                || props.is_some_and(|p| p.contains_key(k))
        });
    }
    object_fields(map, schema, "", &mut errors, &["apiVersion", "kind", "metadata"]);
    errors
}

/// The reasons of errors after which the API server does not run the CEL rules
/// (`hasBlockingErr` of the custom-resource strategy: unsupported value, required, too long, too
/// many, wrong type).
const BLOCKING: [&str; 5] = [
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
];

/// The CEL rules as the API server runs them after the OpenAPI validation (found on the real
/// control plane, issue 11): when an `earlier` error is blocking, not at all, and one error
/// without a field says so; otherwise integers out of their `format`'s range, then the rules.
pub(crate) fn cel_unless_blocked(
    obj: &Value,
    schema: &Value,
    old: Option<&Value>,
    earlier: &[FieldError],
) -> Vec<FieldError> {
    if !has_rules(schema) {
        return Vec::new();
    }
    if earlier.iter().any(|e| BLOCKING.contains(&e.reason)) {
        return vec![FieldError::new(
            NO_FIELD,
            "FieldValueInvalid",
            "Invalid value: null: some validation rules were not checked because the object was \
             invalid; correct the existing errors to complete validation"
                .into(),
        )];
    }
    let mut errors = Vec::new();
    int32_out_of_range(obj, schema, "", &mut errors);
    if errors.is_empty() {
        errors = cel(obj, schema, old);
    }
    errors
}

/// How the API server names the field of an error without a path (its `field.Path` is nil).
const NO_FIELD: &str = "<nil>";

fn has_rules(schema: &Value) -> bool {
    serde_json::to_string(schema).is_ok_and(|s| s.contains("x-kubernetes-validations"))
}

/// The API server converts the object to CEL values before evaluating rules; an integer of
/// `format: int32` outside that range fails the conversion, reported without a field.
fn int32_out_of_range(value: &Value, schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        Value::Number(n)
            if schema.get("format").and_then(Value::as_str) == Some("int32")
                && n.as_i64().is_none_or(|i| i32::try_from(i).is_err()) =>
        {
            errors.push(FieldError::new(
                NO_FIELD,
                "FieldValueInvalid",
                format!(
                    "Invalid value: \"\": Checked value must be of type integer with format int32 in {path}"
                ),
            ));
        }
        Value::Object(map) => {
            for (key, item) in map {
                let sub = schema
                    .pointer(&format!("/properties/{key}"))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(sub) = sub {
                    int32_out_of_range(item, sub, &join(path, key), errors);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    int32_out_of_range(item, sub, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// Evaluates the CEL `x-kubernetes-validations` rules of the schema (with `oldSelf` bound on
/// updates) through kube-cel, after pruning and defaulting. Failures are reported as the API
/// server does: `<path>: Invalid value: "<type>": <message>`.
pub(crate) fn cel(obj: &Value, schema: &Value, old: Option<&Value>) -> Vec<FieldError> {
    if !has_rules(schema) {
        return Vec::new();
    }
    match kube_cel::Validator::new().validate(schema, obj, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| {
                // A rule on the object itself: no field, and no value shown (as for any object).
                if e.field_path.is_empty() {
                    return FieldError::new(
                        NO_FIELD,
                        "FieldValueInvalid",
                        format!("Invalid value: {}", e.message),
                    );
                }
                let ty = value_at_dotted(obj, &e.field_path)
                    .map(type_name)
                    .unwrap_or("object");
                FieldError::new(
                    &e.field_path,
                    "FieldValueInvalid",
                    format!("Invalid value: \"{ty}\": {}", e.message),
                )
            })
            .collect(),
    }
}

/// The value at a dotted path such as `spec.items[0].name`.
fn value_at_dotted<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (key, rest) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        for idx in rest.split(['[', ']']).filter(|s| !s.is_empty()) {
            cur = match idx.parse::<usize>() {
                Ok(i) => cur.get(i)?,
                Err(_) => cur.get(idx)?,
            };
        }
    }
    Some(cur)
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
        || schema
            .get("x-kubernetes-embedded-resource")
            .and_then(Value::as_bool)
            == Some(true)
            && schema.get("properties").is_none()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn show(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Defaults, drops nulls, recurses into and checks the properties of an object node.
fn object_fields(
    map: &mut Map<String, Value>,
    schema: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
    skip: &[&str],
) {
    let props = schema.get("properties").and_then(Value::as_object);
    if let Some(props) = props {
        for (key, sub) in props {
            if skip.contains(&key.as_str()) {
                continue;
            }
            let nullable = sub.get("nullable").and_then(Value::as_bool) == Some(true);
            if map.get(key).is_some_and(Value::is_null) && !nullable {
                map.remove(key);
            }
            if !map.contains_key(key)
                && let Some(default) = sub.get("default")
            {
                map.insert(key.clone(), default.clone());
            }
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                errors.push(FieldError::new(
                    &join(path, r),
                    "FieldValueRequired",
                    "Required value".into(),
                ));
            }
        }
    }
    properties(map, schema, path, errors, skip);
    count_bounds(map.len() as u64, schema, path, errors, "Properties", "properties");
}

/// Recurses into the properties of an object node; prunes unknown fields of a structural schema.
fn properties(
    map: &mut Map<String, Value>,
    schema: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
    skip: &[&str],
) {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = preserves_unknown(schema);
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if skip.contains(&key.as_str()) {
            continue;
        }
        let sub = match (props.and_then(|p| p.get(&key)), additional) {
            (Some(sub), _) => Some((sub, join(path, &key))),
            (None, Some(a)) if a.is_object() => Some((a, format!("{path}[{key}]"))),
            (None, Some(Value::Bool(true))) => None,
            _ if preserve => None,
            _ => {
                // Unknown field of a structural schema: pruned, as the API server does.
                map.remove(&key);
                None
            }
        };
        if let Some((sub, child_path)) = sub
            && let Some(v) = map.get_mut(&key)
        {
            node(v, sub, &child_path, errors);
        }
    }
}

/// `min<What>`/`max<What>` of an object's properties or an array's items.
fn count_bounds(
    count: u64,
    schema: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
    what: &str,
    noun: &str,
) {
    if let Some(min) = schema.get(format!("min{what}")).and_then(Value::as_u64)
        && count < min
    {
        errors.push(FieldError::new(
            path,
            "FieldValueInvalid",
            format!("Invalid value: {count}: {path} in body should have at least {min} {noun}"),
        ));
    }
    if let Some(max) = schema.get(format!("max{what}")).and_then(Value::as_u64)
        && count > max
    {
        errors.push(FieldError::new(
            path,
            "FieldValueTooMany",
            format!("Too many: {count}: must have at most {max} items"),
        ));
    }
}

/// Processes one value against its schema node.
fn node(value: &mut Value, schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            errors.push(FieldError::new(
                path,
                "FieldValueInvalid",
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    expected(schema)
                ),
            ));
        }
        return;
    }
    if !has_type(value, schema, path, errors) {
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(show).collect();
        errors.push(FieldError::new(
            path,
            "FieldValueNotSupported",
            format!(
                "Unsupported value: {}: supported values: {}",
                show(value),
                list.join(", ")
            ),
        ));
    }
    match value {
        Value::Object(map) => {
            let embedded = schema
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true);
            let skip: &[&str] = if embedded {
                &["apiVersion", "kind", "metadata"]
            } else {
                &[]
            };
            object_fields(map, schema, path, errors, skip);
        }
        Value::Array(items) => {
            count_bounds(items.len() as u64, schema, path, errors, "Items", "items");
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    node(item, item_schema, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::String(s) => string_value(s, schema, path, errors),
        Value::Number(n) => number_value(n, schema, path, errors),
        Value::Bool(_) | Value::Null => {}
    }
}

/// Whether `value` has the schema's type (`x-kubernetes-int-or-string` included); reports it
/// if not.
fn has_type(value: &Value, schema: &Value, path: &str, errors: &mut Vec<FieldError>) -> bool {
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    let actual = type_name(value);
    let wanted = if int_or_string {
        if matches!(actual, "integer" | "string") {
            return true;
        }
        "integer,string"
    } else {
        match schema.get("type").and_then(Value::as_str) {
            Some(ty) if ty != actual && !(ty == "number" && actual == "integer") => ty,
            _ => return true,
        }
    };
    errors.push(FieldError::new(
        path,
        "FieldValueTypeInvalid",
        format!("Invalid value: \"{actual}\": {path} in body must be of type {wanted}: \"{actual}\""),
    ));
    false
}

/// `minLength`, `maxLength` and `pattern` of a string.
fn string_value(s: &str, schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let shown = show(&Value::String(s.to_owned()));
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        errors.push(FieldError::new(
            path,
            "FieldValueInvalid",
            format!("Invalid value: {shown}: {path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        errors.push(FieldError::new(
            path,
            "FieldValueTooLong",
            format!("Too long: may not be more than {max} bytes"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => errors.push(FieldError::new(
                path,
                "FieldValueInvalid",
                format!("Invalid value: {shown}: {path} in body should match '{pattern}'"),
            )),
            Err(e) => errors.push(FieldError::new(
                path,
                "FieldValueInvalid",
                format!("Invalid value: {pattern:?}: schema pattern does not compile: {e}"),
            )),
        }
    }
}

/// `minimum`, `maximum` (exclusive or not) and `multipleOf` of a number.
fn number_value(n: &serde_json::Number, schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(x) = n.as_f64() else { return };
    let exclusive = |key: &str| schema.get(key).and_then(Value::as_bool) == Some(true);
    let mut out_of_bounds = |limit: f64, rel: &str| {
        errors.push(FieldError::new(
            path,
            "FieldValueInvalid",
            format!(
                "Invalid value: {n}: {path} in body should be {rel} {}",
                fmt_num(limit)
            ),
        ));
    };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        match exclusive("exclusiveMinimum") {
            true if x <= min => out_of_bounds(min, "greater than"),
            false if x < min => out_of_bounds(min, "greater than or equal to"),
            _ => {}
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        match exclusive("exclusiveMaximum") {
            true if x >= max => out_of_bounds(max, "less than"),
            false if x > max => out_of_bounds(max, "less than or equal to"),
            _ => {}
        }
    }
    if let Some(m) = schema.get("multipleOf").and_then(Value::as_f64)
        && m > 0.0
        && (x / m).fract() != 0.0
    {
        errors.push(FieldError::new(
            path,
            "FieldValueInvalid",
            format!(
                "Invalid value: {n}: {path} in body should be a multiple of {}",
                fmt_num(m)
            ),
        ));
    }
}

fn expected(schema: &Value) -> String {
    schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_string()
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["title", "id"],
                    "properties": {
                        "title": {"type": "string", "minLength": 1, "maxLength": 5},
                        "id": {"type": "integer", "minimum": 1, "maximum": 10},
                        "level": {"type": "string", "enum": ["A", "B"], "default": "A"},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "pattern": "^[a-z]+$"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "opt": {"type": "string", "nullable": true},
                        "port": {"x-kubernetes-int-or-string": true}
                    }
                }
            }
        })
    }

    #[test]
    fn prunes_defaults_and_accepts_valid_object() {
        let mut obj = json!({
            "apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x"},
            "spec": {"title": "hi", "id": 3, "unknown": 1, "free": {"any": {"thing": 1}},
                     "labels": {"a": "b"}, "opt": null, "port": "http"},
            "stray": true
        });
        let errors = process(&mut obj, &schema());
        assert_eq!(errors, vec![]);
        assert_eq!(obj["spec"]["level"], "A");
        assert!(obj["spec"].get("unknown").is_none());
        assert!(obj.get("stray").is_none());
        assert_eq!(obj["spec"]["free"]["any"]["thing"], 1);
        assert!(obj["spec"]["opt"].is_null());
    }

    #[test]
    fn reports_each_violation_with_its_path() {
        let mut obj = json!({
            "spec": {"title": "", "id": "seven", "level": "C", "tags": ["ok", "BAD", "x"],
                     "labels": {"a": 1}}
        });
        let msgs: Vec<String> = process(&mut obj, &schema())
            .iter()
            .map(FieldError::message)
            .collect();
        assert!(
            msgs.contains(
                &"spec.title: Invalid value: \"\": spec.title in body should be at least 1 chars long"
                    .to_string()
            ),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(
                &"spec.id: Invalid value: \"string\": spec.id in body must be of type integer: \"string\""
                    .to_string()
            ),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(
                &"spec.level: Unsupported value: \"C\": supported values: \"A\", \"B\"".to_string()
            ),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(&"spec.tags: Too many: 3: must have at most 2 items".to_string()),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(
                &"spec.tags[1]: Invalid value: \"BAD\": spec.tags[1] in body should match '^[a-z]+$'"
                    .to_string()
            ),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("spec.labels[a]: Invalid value: \"integer\"")),
            "{msgs:?}"
        );
    }

    #[test]
    fn cel_rules_and_transition_rules() {
        let schema = json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.min <= self.max", "message": "min must not exceed max"},
                    {"rule": "self.id == oldSelf.id", "message": "id is immutable"}
                ],
                "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}, "id": {"type": "string"}}
            }}
        });
        let ok = json!({"spec": {"min": 1, "max": 2, "id": "a"}});
        assert_eq!(cel(&ok, &schema, None), vec![]);
        let bad = json!({"spec": {"min": 3, "max": 2, "id": "a"}});
        let msgs: Vec<String> = cel(&bad, &schema, None).iter().map(FieldError::message).collect();
        assert_eq!(
            msgs,
            vec!["spec: Invalid value: \"object\": min must not exceed max"]
        );
        let changed = json!({"spec": {"min": 1, "max": 2, "id": "b"}});
        let msgs: Vec<String> = cel(&changed, &schema, Some(&ok))
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(msgs, vec!["spec: Invalid value: \"object\": id is immutable"]);
    }

    #[test]
    fn required_and_bounds() {
        let mut obj = json!({"spec": {"id": 11, "title": "toolong"}});
        let msgs: Vec<String> = process(&mut obj, &schema())
            .iter()
            .map(FieldError::message)
            .collect();
        assert!(
            msgs.contains(
                &"spec.id: Invalid value: 11: spec.id in body should be less than or equal to 10".to_string()
            ),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(&"spec.title: Too long: may not be more than 5 bytes".to_string()),
            "{msgs:?}"
        );
        let mut obj = json!({"spec": {}});
        let msgs: Vec<String> = process(&mut obj, &schema())
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(
            msgs,
            vec!["spec.title: Required value", "spec.id: Required value"]
        );
    }
}
