//! Text that goes into frames of folded stacks and flamegraphs.

/// Characters that would break the folded format are replaced.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ';' => ':',
            '\n' | '\r' | '\t' => ' ',
            c => c,
        })
        .collect()
}
