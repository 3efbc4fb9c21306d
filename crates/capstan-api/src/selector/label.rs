//! Label selectors in their query-string form, with apimachinery's grammar and meaning:
//!
//! ```text
//! selector    := requirement ("," requirement)*       (empty: matches everything)
//! requirement := "!" KEY                               (label absent)
//!              | KEY                                   (label present)
//!              | KEY ("=" | "==" | "!=") VALUE
//!              | KEY ("in" | "notin") "(" VALUE ("," VALUE)* ")"
//!              | KEY ("<" | ">") INTEGER
//! ```
//!
//! `!=` and `notin` also match objects without the label, as upstream. Keys must be qualified
//! names (`[prefix/]name`) and values valid label values.

use super::SelectorError;
use std::collections::BTreeMap;

/// How a requirement compares a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `=`, `==` and `in`: the label is present with one of the values.
    In,
    /// `!=` and `notin`: the label is absent or has none of the values.
    NotIn,
    /// `KEY`: the label is present.
    Exists,
    /// `!KEY`: the label is absent.
    DoesNotExist,
    /// `KEY > N`: the label is present and an integer greater than N.
    GreaterThan,
    /// `KEY < N`: the label is present and an integer less than N.
    LessThan,
}

/// One comma-separated term of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// The values (`In`, `NotIn`), the one integer (`GreaterThan`, `LessThan`), or none.
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether an object with these labels satisfies the requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|value| self.values.contains(value)),
            Operator::NotIn => value.is_none_or(|value| !self.values.contains(value)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(value), Some(bound)) = (value, self.values.first()) else { return false };
                let (Ok(value), Ok(bound)) = (value.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan { value > bound } else { value < bound }
            }
        }
    }
}

/// A parsed label selector: all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses the `?labelSelector=` form.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let tokens = lex(text)?;
        let mut parser = Parser { tokens, position: 0 };
        let mut requirements = Vec::new();
        if parser.peek().is_none() {
            return Ok(LabelSelector { requirements });
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                None => break,
                Some(Token::Comma) => {}
                Some(other) => {
                    return Err(error(format!(
                        "found '{}', expected: ',' or 'end of string'",
                        other.text()
                    )));
                }
            }
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|requirement| requirement.matches(labels))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Identifier(String),
    Comma,
    Equals,
    DoubleEquals,
    NotEquals,
    Bang,
    Open,
    Close,
    Less,
    Greater,
}

impl Token {
    fn text(&self) -> &str {
        match self {
            Token::Identifier(text) => text,
            Token::Comma => ",",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Bang => "!",
            Token::Open => "(",
            Token::Close => ")",
            Token::Less => "<",
            Token::Greater => ">",
        }
    }
}

fn error(message: String) -> SelectorError {
    SelectorError::Label(message)
}

fn is_special(c: char) -> bool {
    matches!(c, ',' | '=' | '!' | '(' | ')' | '<' | '>') || c.is_whitespace()
}

fn lex(text: &str) -> Result<Vec<Token>, SelectorError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        chars.next();
        let next_is_equals = chars.peek().is_some_and(|&(_, next)| next == '=');
        let token = match c {
            ',' => Token::Comma,
            '(' => Token::Open,
            ')' => Token::Close,
            '<' => Token::Less,
            '>' => Token::Greater,
            '=' if next_is_equals => {
                chars.next();
                Token::DoubleEquals
            }
            '=' => Token::Equals,
            '!' if next_is_equals => {
                chars.next();
                Token::NotEquals
            }
            '!' => Token::Bang,
            _ => {
                let mut end = start + c.len_utf8();
                while let Some(&(index, next)) = chars.peek() {
                    if is_special(next) {
                        break;
                    }
                    end = index + next.len_utf8();
                    chars.next();
                }
                Token::Identifier(text[start..end].to_owned())
            }
        };
        tokens.push(token);
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.peek() == Some(&Token::Bang) {
            self.next();
            let key = self.key()?;
            return match self.peek() {
                None | Some(Token::Comma) => {
                    Ok(Requirement { key, operator: Operator::DoesNotExist, values: vec![] })
                }
                Some(other) => Err(error(format!(
                    "found '{}', expected: ',' or 'end of string'",
                    other.text()
                ))),
            };
        }
        let key = self.key()?;
        let operator = match self.peek() {
            None | Some(Token::Comma) => {
                return Ok(Requirement { key, operator: Operator::Exists, values: vec![] });
            }
            Some(Token::Equals | Token::DoubleEquals) => Operator::In,
            Some(Token::NotEquals) => Operator::NotIn,
            Some(Token::Less) => Operator::LessThan,
            Some(Token::Greater) => Operator::GreaterThan,
            Some(Token::Identifier(word)) if word == "in" => Operator::In,
            Some(Token::Identifier(word)) if word == "notin" => Operator::NotIn,
            Some(other) => {
                return Err(error(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    other.text()
                )));
            }
        };
        let set_based = matches!(self.next(), Some(Token::Identifier(_)));
        let values = if set_based { self.value_set()? } else { vec![self.single_value()?] };
        if matches!(operator, Operator::LessThan | Operator::GreaterThan)
            && values[0].parse::<i64>().is_err()
        {
            return Err(error(format!(
                "for 'Gt', 'Lt' operators, the value must be an integer, not {:?}",
                values[0]
            )));
        }
        for (index, value) in values.iter().enumerate() {
            check_label_value(value).map_err(|why| {
                error(format!("values[{index}][{key}]: Invalid value: {value:?}: {why}"))
            })?;
        }
        Ok(Requirement { key, operator, values })
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        match self.next() {
            Some(Token::Identifier(key)) => {
                check_qualified_name(&key)
                    .map_err(|why| error(format!("key: Invalid value: {key:?}: {why}")))?;
                Ok(key)
            }
            Some(other) => Err(error(format!(
                "found '{}', expected: !, identifier, or 'end of string'",
                other.text()
            ))),
            None => Err(error("found 'end of string', expected: identifier".into())),
        }
    }

    /// The value after `=`, `==`, `!=`, `<` or `>`; may be empty (`app=`).
    fn single_value(&mut self) -> Result<String, SelectorError> {
        match self.peek() {
            Some(Token::Identifier(value)) => {
                let value = value.clone();
                self.next();
                Ok(value)
            }
            None | Some(Token::Comma) => Ok(String::new()),
            Some(other) => Err(error(format!("found '{}', expected: identifier", other.text()))),
        }
    }

    /// `( v1, v2, ... )` after `in` or `notin`. As upstream, an empty slot is the empty value:
    /// `()` is the set {""}, and so are the gaps in `(a,,b)` or `(a,)`.
    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        if self.next() != Some(Token::Open) {
            return Err(error("found something else, expected: '('".into()));
        }
        let mut values = Vec::new();
        let mut expecting_value = true;
        loop {
            match self.next() {
                Some(Token::Identifier(value)) if expecting_value => {
                    values.push(value);
                    expecting_value = false;
                }
                Some(Token::Comma) => {
                    if expecting_value {
                        values.push(String::new());
                    }
                    expecting_value = true;
                }
                Some(Token::Close) => {
                    if expecting_value {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                Some(other) => {
                    return Err(error(format!("found '{}', expected: ',' or ')'", other.text())));
                }
                None => return Err(error("found 'end of string', expected: ')'".into())),
            }
        }
    }
}

/// The first problem with `key` as a qualified name, if any.
fn check_qualified_name(key: &str) -> Result<(), String> {
    crate::validation::qualified_name(key).into_iter().next().map_or(Ok(()), Err)
}

/// The first problem with `value` as a label value, if any.
fn check_label_value(value: &str) -> Result<(), String> {
    crate::validation::label_value(value).into_iter().next().map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// Parses `selector` and checks which of the label sets it selects.
    fn check(selector: &str, cases: &[(&[(&str, &str)], bool)]) {
        let parsed = LabelSelector::parse(selector).unwrap_or_else(|e| panic!("{selector:?}: {e}"));
        for (set, expected) in cases {
            assert_eq!(parsed.matches(&labels(set)), *expected, "{selector:?} on {set:?}");
        }
    }

    #[test]
    fn equality_and_inequality() {
        check("app=web", &[(&[("app", "web")], true), (&[("app", "db")], false), (&[], false)]);
        check("app==web", &[(&[("app", "web")], true)]);
        // != also matches objects without the label, as upstream.
        check("app!=web", &[(&[("app", "web")], false), (&[("app", "db")], true), (&[], true)]);
        check("app=", &[(&[("app", "")], true), (&[("app", "x")], false)]);
    }

    #[test]
    fn sets_and_existence() {
        check(
            "tier in (a, b)",
            &[(&[("tier", "a")], true), (&[("tier", "c")], false), (&[], false)],
        );
        check(
            "tier notin (a,b)",
            &[(&[("tier", "a")], false), (&[("tier", "c")], true), (&[], true)],
        );
        check("canary", &[(&[("canary", "")], true), (&[], false)]);
        check("!canary", &[(&[("canary", "yes")], false), (&[], true)]);
        check(
            "app=web, tier in (fe), !canary",
            &[
                (&[("app", "web"), ("tier", "fe")], true),
                (&[("app", "web"), ("tier", "fe"), ("canary", "1")], false),
            ],
        );
        check("", &[(&[], true), (&[("a", "b")], true)]);
        // Empty slots are the empty value, as upstream.
        check("tier notin ()", &[(&[("tier", "")], false), (&[("tier", "a")], true)]);
        check(
            "tier in (a,)",
            &[(&[("tier", "")], true), (&[("tier", "a")], true), (&[("tier", "b")], false)],
        );
    }

    #[test]
    fn numeric_comparisons() {
        check(
            "replicas>2",
            &[
                (&[("replicas", "3")], true),
                (&[("replicas", "2")], false),
                (&[("replicas", "x")], false),
                (&[], false),
            ],
        );
        check("replicas < 2", &[(&[("replicas", "1")], true), (&[("replicas", "2")], false)]);
    }

    #[test]
    fn qualified_keys() {
        check("app.kubernetes.io/name=web", &[(&[("app.kubernetes.io/name", "web")], true)]);
    }

    #[test]
    fn malformed_selectors_are_refused_with_a_reason() {
        for (selector, reason) in [
            ("app=web,", "expected: identifier"),
            ("=web", "expected: !, identifier"),
            ("tier in (a", "expected: ')'"),
            ("tier in (a b)", "expected: ',' or ')'"),
            ("tier in a", "expected: '('"),
            ("app=we b", "expected: ',' or 'end of string'"),
            ("app=web!", "expected: ',' or 'end of string'"),
            ("-app=x", "key: Invalid value"),
            ("app=-x", "Invalid value"),
            ("Prefix.Upper/app=x", "prefix part"),
            ("replicas>two", "must be an integer"),
            ("!app=x", "expected: ',' or 'end of string'"),
        ] {
            let error = LabelSelector::parse(selector).expect_err(selector).to_string();
            assert!(error.starts_with("unable to parse requirement: "), "{selector}: {error}");
            assert!(error.contains(reason), "{selector}: {error}");
        }
    }

    #[test]
    fn every_string_either_parses_or_is_refused() {
        // A cheap exhaustive sweep over short strings of the grammar's characters: nothing
        // panics, and whatever parses matches without panicking.
        let alphabet = ['a', '=', '!', ',', '(', ')', ' ', '<', '>', '1', 'i', 'n'];
        let labels = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
        crate::exhaustive::every_string(&alphabet, 5, |text| {
            if let Ok(selector) = LabelSelector::parse(text) {
                selector.matches(&labels);
            }
        });
    }
}
