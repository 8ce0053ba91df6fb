//! One-line progress on stderr while a capture runs; silent when stderr is
//! not a terminal.

use std::{
    io::{IsTerminal, Write},
    time::Duration,
};

pub struct Progress {
    enabled: bool,
    drawn: bool,
}

impl Progress {
    pub fn new() -> Self {
        Self { enabled: std::io::stderr().is_terminal(), drawn: false }
    }

    pub fn update(&mut self, left: Duration, samples: u64) {
        if !self.enabled {
            return;
        }
        let secs = left.as_secs_f64().ceil() as u64;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2Ktailprof: recording, {secs}s left, {samples} samples");
        let _ = err.flush();
        self.drawn = true;
    }

    pub fn finish(&mut self) {
        if self.enabled && self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
