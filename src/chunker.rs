//! Content-defined chunking: FastCDC (the fastcdc crate's 2020 algorithm) over byte
//! slices. Pure: callers own the buffers and the I/O.

use fastcdc::v2020::{FastCDC, Normalization};

/// Cut parameters, stored in the repository `config` so that every client cuts alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode, serde::Serialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
    /// FastCDC normalization level 0..=3.
    pub normalization: u8,
}

impl ChunkerParams {
    /// For whole files of any kind; chosen by measurement (format-spec/chunking.md).
    /// Repositories made before 2026-11-22 have 256 KiB / 1 MiB / 4 MiB here.
    pub const DEFAULT: ChunkerParams =
        ChunkerParams { min_size: 512 << 10, avg_size: 2 << 20, max_size: 4 << 20, normalization: 1 };
    /// For streams and files edited in place by insertion (dumps): a third of the
    /// re-stored bytes of DEFAULT after scattered edits, for 2% more stored size.
    pub const MEDIUM: ChunkerParams =
        ChunkerParams { min_size: 64 << 10, avg_size: 256 << 10, max_size: 1 << 20, normalization: 1 };
    /// For page-structured files updated in place (database containers): small enough
    /// that one changed page costs little more than its own bytes.
    pub const FINE: ChunkerParams =
        ChunkerParams { min_size: 4 << 10, avg_size: 16 << 10, max_size: 64 << 10, normalization: 1 };

    /// For database containers: fixed 64 KiB pieces (min = avg = max), the largest
    /// Berkeley DB page size, so no page ever straddles two pieces. Pages are updated in
    /// place and never move, so content-defined cuts gain nothing there; a changed piece
    /// is stored as a delta against the piece at its offset in the parent, which makes
    /// its cost that of the changed bytes, and 64 KiB compresses as well as 1 MiB
    /// (format-spec/chunking.md).
    pub const PAGES: ChunkerParams =
        ChunkerParams { min_size: 64 << 10, avg_size: 64 << 10, max_size: 64 << 10, normalization: 1 };

    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020 as f;
        let ok = (f::MINIMUM_MIN..=f::MINIMUM_MAX).contains(&self.min_size)
            && (f::AVERAGE_MIN..=f::AVERAGE_MAX).contains(&self.avg_size)
            && (f::MAXIMUM_MIN..=f::MAXIMUM_MAX).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size
            && self.normalization <= 3;
        if ok {
            Ok(())
        } else {
            Err(format!("invalid chunker parameters {self:?}"))
        }
    }

    fn level(&self) -> Normalization {
        match self.normalization {
            0 => Normalization::Level0,
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        }
    }
}

/// Lengths of the chunks that `data` splits into. Unless `at_eof`, the last piece is held
/// back (not returned), because more bytes might move its end: the caller keeps it and
/// prepends it to the next buffer. Cuts depend only on bytes from the chunk's own start,
/// so cutting buffer by buffer gives exactly the cuts of the whole file at once, as long
/// as each buffer holds at least `max_size` bytes or reaches the end of the file.
pub fn cut(data: &[u8], params: &ChunkerParams, at_eof: bool) -> Vec<usize> {
    let mut lengths: Vec<usize> =
        FastCDC::with_level(data, params.min_size, params.avg_size, params.max_size, params.level())
            .map(|chunk| chunk.length)
            .collect();
    if !at_eof {
        lengths.pop();
    }
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift), so cut points can be pinned.
    pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn default_cut_points_are_pinned() {
        // A change here changes every chunk id ever written: it is a format change.
        let data = noise(6 << 20, 42);
        let lengths = cut(&data, &ChunkerParams::DEFAULT, true);
        assert_eq!(lengths.iter().sum::<usize>(), data.len());
        assert_eq!(lengths, PINNED_DEFAULT);
        // The default of repositories made before 2026-11-22, which they keep using.
        let earlier = ChunkerParams { min_size: 256 << 10, avg_size: 1 << 20, ..ChunkerParams::DEFAULT };
        assert_eq!(cut(&data, &earlier, true), PINNED_EARLIER_DEFAULT);
        let fine = cut(&data[..200_000], &ChunkerParams::FINE, true);
        assert_eq!(&fine[..6], PINNED_FINE);
    }

    const PINNED_DEFAULT: &[usize] = &[2303867, 2784990, 1007190, 195409];
    const PINNED_EARLIER_DEFAULT: &[usize] = &[1058165, 1245702, 1666421, 1118569, 925238, 277361];
    const PINNED_FINE: &[usize] = &[4140, 26387, 31904, 17069, 11547, 4772];

    #[test]
    fn pages_profile_cuts_at_fixed_offsets() {
        let data = noise(200_000, 3);
        let lengths = cut(&data, &ChunkerParams::PAGES, true);
        assert!(lengths[..lengths.len() - 1].iter().all(|&l| l == 64 << 10), "{lengths:?}");
        assert_eq!(lengths.iter().sum::<usize>(), data.len());
    }

    #[test]
    fn cutting_buffer_by_buffer_equals_cutting_at_once() {
        let params = ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768, normalization: 1 };
        let data = noise(1 << 20, 7);
        let whole = cut(&data, &params, true);
        let mut pieces = Vec::new();
        let mut start = 0;
        for end in (100_000..data.len()).step_by(100_000).chain([data.len()]) {
            let lengths = cut(&data[start..end], &params, end == data.len());
            start += lengths.iter().sum::<usize>();
            pieces.extend(lengths);
        }
        assert_eq!(start, data.len());
        assert_eq!(pieces, whole);
    }

    #[test]
    fn defaults_are_valid() {
        ChunkerParams::DEFAULT.validate().unwrap();
        ChunkerParams::FINE.validate().unwrap();
        ChunkerParams::MEDIUM.validate().unwrap();
        ChunkerParams::PAGES.validate().unwrap();
        assert!(ChunkerParams { min_size: 8, ..ChunkerParams::DEFAULT }.validate().is_err());
    }
}
