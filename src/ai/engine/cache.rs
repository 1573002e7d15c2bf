//! The intent head trained on the knowledge base, kept under the cache directory with the hash
//! of the data it was trained on: a stale head is never read, only replaced. Writes go to a
//! temporary name first and are renamed into place, so a crash or a second process starting at
//! the same moment never leaves half a file under the real name.

use std::path::Path;

use crate::ai::intent::IntentHead;
use crate::ai::{AiError, staging_path};

/// Named for the way the head is trained: a head from an older way is never read.
const HEAD_DIR: &str = "intent-head-neighbours";
const HEAD_NAME: &str = "kb-intents";

/// The cache only saves time: a cache that cannot be written (a read-only filesystem, a full
/// disk) is reported and the engine goes on with what it computed; the next start computes it
/// again.
pub(super) fn keep(what: &str, saved: Result<(), AiError>) {
    if let Err(e) = saved {
        tracing::warn!(error = ?e, what, "could not cache; it is computed again at the next start");
    }
}

/// The cached head, if it was trained on data with this hash.
pub(super) fn load_head(cache: &Path, hash: &str) -> Option<IntentHead> {
    let head = IntentHead::load(&cache.join(HEAD_DIR), HEAD_NAME).ok()?;
    (head.info().data_hash == hash).then_some(head)
}

pub(super) fn save_head(cache: &Path, head: &IntentHead) -> Result<(), AiError> {
    let staging = staging_path(&cache.join(HEAD_DIR));
    head.save(&staging, HEAD_NAME)?;
    let dir = cache.join(HEAD_DIR);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    for ext in ["safetensors", "json"] {
        let file = format!("{HEAD_NAME}.{ext}");
        std::fs::rename(staging.join(&file), dir.join(&file)).map_err(io(&dir))?;
    }
    std::fs::remove_dir_all(&staging).map_err(io(&staging))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AiError {
    let path = path.to_owned();
    move |source| AiError::CacheIo { path, source }
}
