//! How fast bytes move, measured by spkctl itself from the byte counts it is shown, and the one
//! format of durations (`0:12`, `1:02:03`) and rates (`4.20 MiB/s, 0:08 left`) it prints.
//!
//! The clock starts at the first count seen, not at zero bytes: a monitor that joins a download
//! at 60 MiB measures only what moves after it joined. A rate is shown only while the count
//! moves; a finished or stalled stream has none (no rate decaying towards zero).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::display::human_bytes;

/// The rate is the average over about this much of the recent past.
const WINDOW: Duration = Duration::from_secs(3);
/// Shorter than this, a measurement says too little to be shown.
const SHORTEST: Duration = Duration::from_millis(500);
/// A count that has not moved for this long is not moving.
const STILL: Duration = Duration::from_secs(1);

/// Recent (time, bytes) counts of one stream.
#[derive(Debug, Default)]
pub struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    /// The count is `bytes` at `now`; a count that went back (the stream started over) starts
    /// the measurement again.
    pub fn sample(&mut self, now: Instant, bytes: u64) {
        match self.samples.back() {
            Some(&(_, last)) if last == bytes => return,
            Some(&(_, last)) if last > bytes => self.samples.clear(),
            _ => {}
        }
        self.samples.push_back((now, bytes));
        // Keep one sample at or before the window's start as its base.
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= WINDOW {
            self.samples.pop_front();
        }
    }

    /// Forget the stream (it ended or its bytes stopped being counted).
    pub fn stop(&mut self) {
        self.samples.clear();
    }

    /// Bytes per second, while the count moves.
    pub fn per_second(&self, now: Instant) -> Option<f64> {
        let (&(first_at, first), &(last_at, last)) = (self.samples.front()?, self.samples.back()?);
        if now.duration_since(last_at) > STILL {
            return None;
        }
        let span = last_at.duration_since(first_at);
        if span < SHORTEST || last <= first {
            return None;
        }
        Some((last - first) as f64 / span.as_secs_f64())
    }

    /// `4.20 MiB/s, 0:08 left` for `left` bytes to go, or nothing while the count stands.
    pub fn text(&self, now: Instant, left: u64) -> String {
        match self.per_second(now) {
            Some(rate) => {
                // Rounded up: "0:00 left" while bytes are still to come would be untrue.
                let eta = Duration::from_secs_f64((left as f64 / rate).min(360_000.0).ceil());
                format!("{}/s, {} left", human_bytes(rate as u64), clock(eta))
            }
            None => String::new(),
        }
    }
}

/// A duration as a clock: `0:08`, `12:34`, `1:02:03` (whole seconds).
pub fn clock(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_measured_from_the_first_count_seen() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        // Joined late: 60 MiB already there count for nothing.
        r.sample(t0, 60 << 20);
        assert_eq!(r.per_second(t0), None);
        r.sample(t0 + Duration::from_secs(1), (60 << 20) + 1000);
        let rate = r.per_second(t0 + Duration::from_secs(1)).unwrap();
        assert!((rate - 1000.0).abs() < 1.0, "{rate}");
    }

    #[test]
    fn a_stream_that_stopped_has_no_rate() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        r.sample(t0, 0);
        r.sample(t0 + Duration::from_secs(1), 1000);
        assert!(r.per_second(t0 + Duration::from_secs(1)).is_some());
        assert_eq!(r.per_second(t0 + Duration::from_secs(3)), None);
        assert_eq!(r.text(t0 + Duration::from_secs(3), 10), "");
    }

    #[test]
    fn sizes_never_have_four_digits_before_the_point() {
        assert_eq!(human_bytes(188), "188 B");
        assert_eq!(human_bytes(263_500), "257.32 KiB");
        assert_eq!(human_bytes(1_046_478), "1.00 MiB");
        assert_eq!(human_bytes(1_000), "0.98 KiB");
        assert_eq!(human_bytes(9_447_850), "9.01 MiB");
    }

    #[test]
    fn durations_read_as_a_clock() {
        assert_eq!(clock(Duration::from_millis(7900)), "0:07");
        assert_eq!(clock(Duration::from_secs(754)), "12:34");
        assert_eq!(clock(Duration::from_secs(3723)), "1:02:03");
        assert_eq!(clock(Duration::ZERO), "0:00");
    }
}
