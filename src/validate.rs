//! Free-text checks shared by every handler. PostgreSQL refuses NUL in
//! `text` and `\u0000` in `jsonb`; without these checks such input reaches
//! the database and fails there as a 500 instead of a 422 naming the field.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Why `s` is not acceptable text, if it is not. Multi-line text
/// (descriptions) may hold tabs and line breaks; nothing else below U+0020,
/// DEL or the C1 controls is accepted anywhere.
pub fn text_problem(s: &str, multi_line: bool) -> Option<&'static str> {
    if s.contains('\0') {
        return Some("must not contain NUL characters");
    }
    let allowed = |c: char| multi_line && matches!(c, '\t' | '\n' | '\r');
    s.chars().any(|c| c.is_control() && !allowed(c)).then_some("must not contain control characters")
}

/// A one-line value (a name, an e-mail, an identifier): 422 naming `field`
/// when it holds a control character.
pub fn single_line(field: &str, s: &str) -> ApiResult<()> {
    text_problem(s, false).map_or(Ok(()), |d| Err(ApiError::invalid(field, d)))
}

/// Multi-line text (a description): tabs and line breaks are allowed.
pub fn multi_line(field: &str, s: &str) -> ApiResult<()> {
    text_problem(s, true).map_or(Ok(()), |d| Err(ApiError::invalid(field, d)))
}

/// A JSON value stored as jsonb: 422 naming the path of the first string or
/// key that holds a NUL (`data.a[2]`). Other control characters are fine:
/// jsonb stores them escaped.
pub fn json(field: &str, v: &Value) -> ApiResult<()> {
    match nul_path(v, field) {
        Some(path) => Err(ApiError::invalid(path, "must not contain NUL characters (\\u0000)")),
        None => Ok(()),
    }
}

fn nul_path(v: &Value, at: &str) -> Option<String> {
    match v {
        Value::String(s) if s.contains('\0') => Some(at.to_string()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, x)| nul_path(x, &format!("{at}[{i}]"))),
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            if k.contains('\0') {
                Some(format!("{at}.{}", k.replace('\0', "\\u0000")))
            } else {
                nul_path(x, &format!("{at}.{k}"))
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(r: ApiResult<()>) -> Option<String> {
        match r {
            Err(ApiError::Invalid { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn nul_and_control_characters_are_refused_naming_the_field() {
        assert_eq!(field_of(single_line("name", "a\0b")), Some("name".into()));
        assert_eq!(field_of(single_line("name", "a\u{7}b")), Some("name".into()));
        assert_eq!(field_of(single_line("name", "a\nb")), Some("name".into()));
        assert!(single_line("name", "Zoë 東京").is_ok());
        assert!(multi_line("description", "line 1\r\n\tline 2").is_ok());
        assert_eq!(field_of(multi_line("description", "x\0")), Some("description".into()));
        assert_eq!(field_of(multi_line("description", "x\u{1b}[31m")), Some("description".into()));
    }

    #[test]
    fn json_names_the_path_of_a_nul() {
        assert!(json("data", &json!({"a": ["x", {"b": "tab\there"}], "n": 1})).is_ok());
        assert_eq!(field_of(json("data", &json!({"a": ["x", {"b": "c\u{0}"}]}))), Some("data.a[1].b".into()));
        assert_eq!(field_of(json("data", &json!({"k\u{0}": 1}))), Some("data.k\\u0000".into()));
        assert_eq!(field_of(json("[3].data", &json!("\u{0}"))), Some("[3].data".into()));
    }
}
