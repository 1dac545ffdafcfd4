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

/// The cache key of a preview: the stored original's hash (a replaced instance gets a new
/// preview), the size and the renderer version.
pub fn preview_cache_key(original: &ContentHash, max_px: u32) -> String {
    format!("preview|{PREVIEW_RENDERER}|{}|{max_px}", original.hex())
}

/// A PNG preview of a stored instance (first frame, windowed, longest side ≤ `max_px`,
/// clamped to 1..=4096); `Ok(None)` when no such instance is stored. Rendered from the
/// stored original and cached as a blob under [`preview_cache_key`]; the cache write
/// happens in the background and its failure only costs a later re-render. Called by the
/// gate only ([`crate::InstancesRead::preview`]).
pub(crate) async fn preview_png(
    store: &huren_store::Store,
    sop_instance_uid: &str,
    max_px: u32,
) -> Result<Option<Vec<u8>>, PreviewFailure> {
    {
        let max_px = max_px.clamp(1, huren_dicom::preview::MAX_MAX_PX);
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
