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
    comm_str(comm).into_owned()
}

/// A NUL-padded kernel comm as text, borrowed when it is valid UTF-8.
pub fn comm_str(comm: &[u8; profiler_common::TASK_COMM_LEN]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(profiler_common::comm_bytes(comm))
}

/// A shared thread or process name.
pub type Name = std::sync::Arc<str>;

/// One copy of each name: a window's thousands of threads share a few
/// (the churn's 30,000 threads in a soak window have a handful of names,
/// and a copy each took 1–2 MB).
#[derive(Debug, Default)]
pub struct Names(rustc_hash::FxHashSet<Name>);

impl Names {
    /// The shared copy of `s`.
    pub fn get(&mut self, s: &str) -> Name {
        match self.0.get(s) {
            Some(n) => n.clone(),
            None => {
                let n: Name = s.into();
                self.0.insert(n.clone());
                n
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_held_once() {
        let mut names = Names::default();
        let (a, b) = (names.get("worker"), names.get("worker"));
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert_eq!(&*names.get("other"), "other");
        assert_eq!(names.0.len(), 2);
    }
}
