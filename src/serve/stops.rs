//! Stop strings over streamed text: text is released as it arrives, except a tail that could
//! still become a stop string; once one appears, the text before it is the last released.

/// Text released so far and what is held back.
#[derive(Debug, Default)]
pub struct StopScan {
    stops: Vec<String>,
    text: String,
    released: usize,
    stopped: bool,
}

impl StopScan {
    /// Scans for `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> StopScan {
        StopScan {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..StopScan::default()
        }
    }

    /// Whether a stop string has appeared.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds `piece`; returns the text that is now safe to release.
    pub fn push(&mut self, piece: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.text.push_str(piece);
        // A stop string may start inside text already held back, never inside released text.
        let from = self.released;
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|at| from + at))
            .min();
        let end = match found {
            Some(at) => {
                self.stopped = true;
                at
            }
            None => self.text.len() - self.held_tail(),
        };
        let out = self.text[self.released..end].to_string();
        self.released = end;
        out
    }

    /// What is still held back, released at the end of generation.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        let out = self.text[self.released..].to_string();
        self.released = self.text.len();
        out
    }

    /// Bytes at the end of the text that begin some stop string.
    fn held_tail(&self) -> usize {
        let unreleased = &self.text[self.released..];
        unreleased
            .char_indices()
            .map(|(at, _)| &unreleased[at..])
            .find(|tail| self.stops.iter().any(|s| s.starts_with(tail)))
            .map_or(0, str::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut scan = StopScan::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out: Vec<String> = pieces.iter().map(|p| scan.push(p)).collect();
        out.push(scan.finish());
        (out, scan.stopped())
    }

    #[test]
    fn a_stop_string_split_over_pieces_is_held_back_then_cut() {
        let (out, stopped) = run(&["\nUser:"], &["Hello", " there\nU", "ser: more", "x"]);
        assert_eq!(out, ["Hello", " there", "", "", ""]);
        assert!(stopped);
    }

    #[test]
    fn a_prefix_that_does_not_become_a_stop_is_released() {
        let (out, stopped) = run(&["END"], &["a E", "N", "d", "!"]);
        assert_eq!(out, ["a ", "", "ENd", "!", ""]);
        assert!(!stopped);
        let (out, _) = run(&["END"], &["tail E"]);
        assert_eq!(out, ["tail ", "E"]);
    }

    #[test]
    fn the_earliest_of_several_stops_wins_and_multibyte_text_is_kept_whole() {
        let (out, stopped) = run(&["ß", "b"], &["aéb", "ß"]);
        assert_eq!(out.concat(), "aé");
        assert!(stopped);
        let (out, _) = run(&[], &["ü", "ñ"]);
        assert_eq!(out.concat(), "üñ");
    }
}
