//! SVG flamegraphs rendered by inferno from folded stacks.

use std::io::Write;

use inferno::flamegraph::{
    self,
    color::{Color, MultiPalette, PaletteMap},
    Options, Palette,
};

use super::folded::Folded;

/// Colours of the `[state]` frames of wall-clock and off-CPU flamegraphs.
const STATE_COLOURS: [(&str, (u8, u8, u8)); 6] = [
    ("[running]", (80, 180, 80)),
    ("[runnable]", (220, 70, 60)),
    ("[sleeping]", (90, 130, 210)),
    ("[disk]", (230, 150, 40)),
    ("[other]", (150, 150, 150)),
    ("[stack lost]", (60, 60, 60)),
];

/// `count_name`: what a folded count measures ("samples", "ns").
pub fn write(folded: &Folded, title: &str, count_name: &str, w: &mut dyn Write) -> std::io::Result<()> {
    let mut palette = PaletteMap::default();
    for (frame, (r, g, b)) in STATE_COLOURS {
        palette.insert(frame, Color { r, g, b });
    }
    let mut options = Options::default();
    options.title = title.to_owned();
    options.count_name = count_name.to_owned();
    options.palette_map = Some(&mut palette);
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
