//! A minimal JSON writer: objects and arrays with automatic commas, escaped strings, finite
//! numbers (non-finite ones become `null`).

use std::fmt::Write;

/// Writes one JSON value into a `String`.
#[derive(Debug)]
pub struct Json<'a> {
    out: &'a mut String,
    /// Per open container: whether it has no element yet.
    empty: Vec<bool>,
}

impl<'a> Json<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut String) -> Self {
        Self { out, empty: Vec::new() }
    }

    fn sep(&mut self, key: Option<&str>) {
        if let Some(e) = self.empty.last_mut() {
            if !*e {
                self.out.push(',');
            }
            *e = false;
        }
        if let Some(k) = key {
            string(self.out, k);
            self.out.push(':');
        }
    }

    /// Opens an object (`key`: inside an object; `None`: top level or in an array).
    pub fn begin(&mut self, key: Option<&str>) -> &mut Self {
        self.sep(key);
        self.out.push('{');
        self.empty.push(true);
        self
    }
    /// Closes the innermost object.
    pub fn end(&mut self) -> &mut Self {
        self.empty.pop();
        self.out.push('}');
        self
    }
    /// Opens an array.
    pub fn begin_array(&mut self, key: Option<&str>) -> &mut Self {
        self.sep(key);
        self.out.push('[');
        self.empty.push(true);
        self
    }
    /// Closes the innermost array.
    pub fn end_array(&mut self) -> &mut Self {
        self.empty.pop();
        self.out.push(']');
        self
    }
    /// An unsigned number.
    pub fn u(&mut self, key: &str, v: u64) -> &mut Self {
        self.sep(Some(key));
        let _ = write!(self.out, "{v}");
        self
    }
    /// A float (3 decimals).
    pub fn f(&mut self, key: &str, v: f64) -> &mut Self {
        self.sep(Some(key));
        if v.is_finite() {
            let _ = write!(self.out, "{v:.3}");
        } else {
            self.out.push_str("null");
        }
        self
    }
    /// A string.
    pub fn s(&mut self, key: &str, v: &str) -> &mut Self {
        self.sep(Some(key));
        string(self.out, v);
        self
    }
    /// A boolean.
    pub fn b(&mut self, key: &str, v: bool) -> &mut Self {
        self.sep(Some(key));
        self.out.push_str(if v { "true" } else { "false" });
        self
    }
}

/// Appends `s` as a JSON string.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_commas_escapes() {
        let mut s = String::new();
        let mut j = Json::new(&mut s);
        j.begin(None).u("a", 1).s("b", "x\"y\n\u{1}").begin_array(Some("c"));
        j.begin(None).b("d", true).end().begin(None).f("e", f64::NAN).end();
        j.end_array().f("g", 1.5).end();
        assert_eq!(s, r#"{"a":1,"b":"x\"y\n\u0001","c":[{"d":true},{"e":null}],"g":1.500}"#);
    }
}
