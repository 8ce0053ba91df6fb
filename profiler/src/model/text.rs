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

/// A NUL-padded kernel comm as a string.
pub fn comm_string(comm: &[u8; profiler_common::TASK_COMM_LEN]) -> String {
    String::from_utf8_lossy(profiler_common::comm_bytes(comm)).into_owned()
}
