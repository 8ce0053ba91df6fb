//! SVG flamegraphs rendered by inferno from folded stacks.

use std::io::Write;

use inferno::flamegraph::{self, color::MultiPalette, Options, Palette};

use super::folded::Folded;

pub fn write(folded: &Folded, title: &str, w: &mut dyn Write) -> std::io::Result<()> {
    let mut options = Options::default();
    options.title = title.to_owned();
    options.count_name = "samples".to_owned();
    // The java palette colours `_[k]` kernel frames apart from user frames.
    options.colors = Palette::Multi(MultiPalette::Java);
    if folded.is_empty() {
        // inferno refuses empty input; an empty capture still gets a valid SVG.
        return write!(
            w,
            r#"<?xml version="1.0" standalone="no"?><svg version="1.1" width="1200" height="60" xmlns="http://www.w3.org/2000/svg"><text x="600" y="30" text-anchor="middle">{title}: no samples</text></svg>"#
        );
    }
    let lines: Vec<String> = folded.iter().map(|(s, n)| format!("{s} {n}")).collect();
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), w).map_err(std::io::Error::other)
}
