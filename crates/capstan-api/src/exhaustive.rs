//! Exhaustive checks of parsers over short strings: every string up to a length, built from a
//! parser's own alphabet, goes through a check. Cheap, and it finds the edge cases that
//! hand-picked tables miss (empty inputs, lone operators, doubled signs).

/// Calls `check` with every string of at most `max_len` characters from `alphabet`,
/// the empty string included.
pub(crate) fn every_string(alphabet: &[char], max_len: usize, mut check: impl FnMut(&str)) {
    fn walk(text: &mut String, alphabet: &[char], depth: usize, check: &mut dyn FnMut(&str)) {
        check(text);
        if depth == 0 {
            return;
        }
        for &c in alphabet {
            text.push(c);
            walk(text, alphabet, depth - 1, check);
            text.pop();
        }
    }
    walk(&mut String::new(), alphabet, max_len, &mut check);
}
