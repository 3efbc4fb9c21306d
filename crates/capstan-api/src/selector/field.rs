//! Field selectors in their query-string form, as apimachinery's `fields.ParseSelector`:
//! comma-separated `field=value`, `field==value` or `field!=value` terms, where a value escapes
//! `\`, `,` and `=` with a backslash. Which fields a resource supports is the resource's
//! business; this type only parses and matches.

use super::SelectorError;

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    /// `!=` rather than `=`/`==`.
    pub negated: bool,
}

/// A parsed field selector: all terms must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the `?fieldSelector=` form.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(text, ',')? {
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_term(&term)?);
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The fields it names, so that a resource can refuse ones it does not support.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|requirement| requirement.field.as_str())
    }

    /// Whether an object is selected, given a way to read its (supported) fields; a field the
    /// object lacks reads as the empty string, as upstream.
    pub fn matches<'a>(&self, field: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|requirement| {
            let actual = field(&requirement.field).unwrap_or("");
            (actual == requirement.value) != requirement.negated
        })
    }
}

/// Splits on unescaped `separator`, keeping escapes in place (they are undone per value).
fn split_unescaped(text: &str, separator: char) -> Result<Vec<String>, SelectorError> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let escaped = chars.next().ok_or_else(|| {
                    SelectorError::Field(format!("{text:?}: a trailing backslash escapes nothing"))
                })?;
                current.push('\\');
                current.push(escaped);
            }
            c if c == separator => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    Ok(parts)
}

fn parse_term(term: &str) -> Result<FieldRequirement, SelectorError> {
    // The field ends where the first operator starts, scanning from the left; fields never
    // contain one.
    let operator = (0..term.len()).find_map(|at| {
        let rest = term.get(at..)?;
        if rest.starts_with("!=") {
            Some((at, 2, true))
        } else if rest.starts_with("==") {
            Some((at, 2, false))
        } else if rest.starts_with('=') {
            Some((at, 1, false))
        } else {
            None
        }
    });
    let Some((at, len, negated)) = operator else {
        return Err(SelectorError::Field(format!(
            "{term:?}: expected field=value, field==value or field!=value"
        )));
    };
    let field = &term[..at];
    if field.is_empty() {
        return Err(SelectorError::Field(format!("{term:?}: the field name is empty")));
    }
    Ok(FieldRequirement {
        field: field.to_owned(),
        value: unescape(&term[at + len..], term)?,
        negated,
    })
}

/// Undoes `\\`, `\,` and `\=`; any other escape, or an unescaped `=` or `,`, is an error.
fn unescape(value: &str, term: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => out.push(escaped),
                other => {
                    return Err(SelectorError::Field(format!(
                        "{term:?}: invalid escape sequence \\{}",
                        other.map(String::from).unwrap_or_default()
                    )));
                }
            },
            '=' | ',' => {
                return Err(SelectorError::Field(format!(
                    "{term:?}: unescaped {c:?} in the value"
                )));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(selector: &str, object: &[(&str, &str)]) -> bool {
        let parsed = FieldSelector::parse(selector).unwrap_or_else(|e| panic!("{selector:?}: {e}"));
        parsed.matches(|field| {
            object.iter().find(|(name, _)| *name == field).map(|(_, value)| *value)
        })
    }

    #[test]
    fn equality_inequality_and_conjunction() {
        let pod =
            [("metadata.name", "web-1"), ("status.phase", "Running"), ("spec.nodeName", "n1")];
        assert!(select("metadata.name=web-1", &pod));
        assert!(select("metadata.name==web-1", &pod));
        assert!(!select("metadata.name=web-2", &pod));
        assert!(select("status.phase!=Pending,spec.nodeName=n1", &pod));
        assert!(!select("status.phase!=Running", &pod));
        // A missing field reads as empty: `spec.nodeName=` selects unscheduled pods.
        assert!(select("spec.nodeName=", &[("metadata.name", "x")]));
        assert!(select("", &pod));
    }

    #[test]
    fn escapes_in_values() {
        let parsed = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
        assert_eq!(parsed.requirements[0].value, r"a,b=c\d");
        assert!(FieldSelector::parse(r"metadata.name=a\x").is_err());
        assert!(FieldSelector::parse(r"metadata.name=a\").is_err());
        assert!(FieldSelector::parse("metadata.name=a=b").is_err());
    }

    #[test]
    fn every_short_string_parses_or_is_refused() {
        crate::exhaustive::every_string(&['a', '=', '!', ',', '\\', 'é', '.'], 6, |text| {
            if let Ok(selector) = FieldSelector::parse(text) {
                selector.matches(|_| Some("a"));
            }
        });
    }

    #[test]
    fn malformed_terms_are_refused() {
        for bad in ["metadata.name", "=x", "metadata.name=a!=b"] {
            let error = FieldSelector::parse(bad).expect_err(bad).to_string();
            assert!(error.starts_with("invalid field selector: "), "{bad}: {error}");
        }
    }
}
