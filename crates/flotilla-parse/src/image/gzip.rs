//! Inflating `.bin.gz` files with a hard cap on the output, so a gzip bomb costs at most
//! `limit` bytes of memory and the time to inflate them.

use std::io::Read;

use super::ImageError;

/// The two bytes every gzip stream starts with.
pub(super) const MAGIC: [u8; 2] = [0x1F, 0x8B];
/// Deflate cannot expand data more than about 1032:1; a size hint beyond that is a lie.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Inflates a single-member gzip file into at most `limit` bytes. Data after the gzip member is
/// an error, like data after an image.
pub(super) fn inflate(bytes: &[u8], limit: u64) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::with_capacity(capacity_hint(bytes, limit));
    // `bufread` decoder over the slice: it consumes exactly the member, so what is left of the
    // slice afterwards is trailing data.
    let mut decoder = flate2::bufread::GzDecoder::new(bytes);
    (&mut decoder)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| ImageError::GzipCorrupt { reason: e.to_string() })?;
    if out.len() as u64 > limit {
        return Err(ImageError::GzipTooLarge { limit });
    }
    let rest = decoder.into_inner();
    if !rest.is_empty() {
        return Err(ImageError::TrailingData {
            offset: (bytes.len() - rest.len()) as u64,
            len: rest.len() as u64,
            after: "gzip stream",
        });
    }
    Ok(out)
}

/// Initial buffer size from the gzip trailer's ISIZE (inflated length mod 2^32), trusted only as
/// far as the limit and deflate's maximum ratio allow.
fn capacity_hint(bytes: &[u8], limit: u64) -> usize {
    let isize = bytes.last_chunk::<4>().map_or(0, |w| u64::from(u32::from_le_bytes(*w)));
    let plausible = (bytes.len() as u64).saturating_mul(MAX_DEFLATE_RATIO);
    let hint = isize.min(limit).min(plausible).saturating_add(1);
    usize::try_from(hint).unwrap_or(0)
}
