//! Previews of stored DICOM instances: the first frame windowed to a PNG, cached as a blob.
//! Read only through the gate ([`crate::InstancesRead::preview`]).

use huren_model::ContentHash;

/// Why a preview has no PNG to give.
#[derive(Debug, thiserror::Error)]
pub enum PreviewFailure {
    /// The instance cannot be rendered (415) or its pixel data is broken (422).
    #[error(transparent)]
    Render(#[from] huren_dicom::preview::PreviewError),
    /// The store could not answer, or the stored original is missing (500).
    #[error("store: {0}")]
    Store(String),
}

impl PreviewFailure {
    /// The HTTP status: 415, 422 or 500.
    pub fn http_status(&self) -> u16 {
        match self {
            PreviewFailure::Render(e) => e.http_status(),
            PreviewFailure::Store(_) => 500,
        }
    }
}

/// Bumped whenever the renderer's output changes, so stale cached previews are not served.
const PREVIEW_RENDERER: &str = "v1";

/// The only sizes (longest side, pixels) a preview is rendered and cached at. A request is
/// rounded down to the largest one not above it, so the answer fits the size or viewport
/// asked for; below the smallest, the smallest. The cache then holds at most this many
/// PNGs per stored original, whatever sizes are asked (issue 16, finding 9: 200 sizes of one
/// image had cost 513 MB of cache and 59 s of CPU).
pub const PREVIEW_SIZES: [u32; 7] = [64, 128, 256, 512, 1024, 2048, 4096];

/// The size of [`PREVIEW_SIZES`] a request for `requested` pixels is rendered at.
pub fn preview_size(requested: u32) -> u32 {
    PREVIEW_SIZES
        .iter()
        .rev()
        .find(|&&s| s <= requested)
        .copied()
        .unwrap_or(PREVIEW_SIZES[0])
}

/// The cache key of a preview: the stored original's hash (a replaced instance gets a new
/// preview), the size and the renderer version.
pub fn preview_cache_key(original: &ContentHash, max_px: u32) -> String {
    format!("preview|{PREVIEW_RENDERER}|{}|{max_px}", original.hex())
}

/// A PNG preview of a stored instance (first frame, windowed, longest side ≤
/// [`preview_size`]`(max_px)`); `Ok(None)` when no such instance is stored. Rendered from the
/// stored original and cached as a blob under [`preview_cache_key`]; the cache write
/// happens in the background and its failure only costs a later re-render. Called by the
/// gate only ([`crate::InstancesRead::preview`]).
pub(crate) async fn preview_png(
    store: &huren_store::Store,
    sop_instance_uid: &str,
    max_px: u32,
) -> Result<Option<Vec<u8>>, PreviewFailure> {
    {
        let max_px = preview_size(max_px).min(huren_dicom::preview::MAX_MAX_PX);
        let store2 = store.clone();
        let uid = sop_instance_uid.to_string();
        let job = tokio::task::spawn_blocking(move || {
            let store = store2;
            let Some(rec) = store
                .instance(&uid)
                .map_err(|e| PreviewFailure::Store(e.to_string()))?
            else {
                return Ok(None);
            };
            let key = preview_cache_key(&rec.original, max_px);
            match store.cached_blob(&key) {
                Ok(Some(png)) => return Ok(Some((png, None))),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "preview cache read failed; rendering"),
            }
            let original = store
                .blob(&rec.original)
                .map_err(|e| PreviewFailure::Store(e.to_string()))?
                .ok_or_else(|| {
                    PreviewFailure::Store(format!("original {} is missing", rec.original))
                })?;
            let png = huren_dicom::preview::render_png(&original, max_px)?;
            Ok(Some((png, Some(key))))
        });
        let (png, key) = match job.await {
            Ok(Ok(Some(x))) => x,
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(PreviewFailure::Store(format!("render task: {e}"))),
        };
        if let Some(key) = key {
            let store = store.clone();
            let bytes = png.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = store.put_cached_blob(&key, &bytes) {
                    tracing::warn!(error = %e, "preview cache write failed");
                }
            });
        }
        Ok(Some(png))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_down_to_the_set() {
        let cases = [
            (0, 64),
            (1, 64),
            (63, 64),
            (64, 64),
            (65, 64),
            (255, 128),
            (256, 256),
            (600, 512),
            (1000, 512),
            (1024, 1024),
            (4095, 2048),
            (4096, 4096),
            (u32::MAX, 4096),
        ];
        for (asked, got) in cases {
            assert_eq!(preview_size(asked), got, "{asked}");
        }
        // Every size of the set is one the renderer honours.
        assert!(PREVIEW_SIZES
            .iter()
            .all(|&s| s <= huren_dicom::preview::MAX_MAX_PX));
        let distinct: std::collections::BTreeSet<u32> = (0..10_000).map(preview_size).collect();
        assert_eq!(distinct.len(), PREVIEW_SIZES.len());
    }
}
