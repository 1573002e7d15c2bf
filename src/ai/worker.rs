//! The micro-batching worker: one OS thread owns the [`Embedder`] and serves requests from a
//! bounded queue in batches, so concurrent conversations share forward passes (a batch of 32
//! costs far less than 32 passes of one) and the async runtime never runs model code. It takes
//! the first waiting request, then whatever else is queued (up to `max_batch`, waiting up to
//! `max_wait` for more), embeds them in one pass and answers each through its own oneshot.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{AiError, Embedder, Embedding};

/// How the worker trades latency for batching.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Most texts in one forward pass.
    pub max_batch: usize,
    /// Longest a request waits for others to join its batch. Requests that arrive while a
    /// batch runs are taken together in the next one anyway, so the default is not to wait:
    /// measured here (docs/benchmarks.md), a 1 ms wait made a lone caller 2.4 ms slower and
    /// gained nothing with 64 concurrent callers (1,112/s against 1,110/s).
    pub max_wait: Duration,
    /// Requests queued beyond the running batch; one more is refused with
    /// [`AiError::Overloaded`] instead of growing memory and latency without bound.
    pub queue_capacity: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_wait: Duration::ZERO,
            queue_capacity: 1024,
        }
    }
}

struct Request {
    text: String,
    /// The embedding and the size of the batch it was computed in.
    reply: oneshot::Sender<Result<(Embedding, usize), AiError>>,
}

/// A cloneable handle to the embedding worker, for async code. The worker thread stops when
/// the last handle is dropped.
#[derive(Clone)]
pub struct EmbedHandle {
    queue: SyncSender<Request>,
}

impl EmbedHandle {
    /// Starts the worker thread, which owns `embedder` from now on.
    pub fn spawn(embedder: Embedder, config: WorkerConfig) -> Result<Self, AiError> {
        let (queue, requests) = sync_channel(config.queue_capacity.max(1));
        std::thread::Builder::new()
            .name("switchboard-embed".into())
            .spawn(move || serve(&embedder, &requests, &config))
            .map_err(|e| AiError::Threads(Box::new(e)))?;
        Ok(Self { queue })
    }

    /// Embeds `text` in the next batch. Fails at once with [`AiError::Overloaded`] when the
    /// queue is full.
    pub async fn embed(&self, text: impl Into<String>) -> Result<Embedding, AiError> {
        Ok(self.embed_in_batch(text).await?.0)
    }

    /// Like [`Self::embed`], with the number of texts embedded in the same forward pass.
    pub async fn embed_in_batch(
        &self,
        text: impl Into<String>,
    ) -> Result<(Embedding, usize), AiError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            text: text.into(),
            reply,
        };
        self.queue.try_send(request).map_err(|e| match e {
            TrySendError::Full(_) => AiError::Overloaded,
            TrySendError::Disconnected(_) => AiError::WorkerStopped,
        })?;
        answer.await.map_err(|_| AiError::WorkerStopped)?
    }
}

fn serve(embedder: &Embedder, requests: &Receiver<Request>, config: &WorkerConfig) {
    let mut batch = Vec::with_capacity(config.max_batch);
    while let Ok(first) = requests.recv() {
        let deadline = Instant::now() + config.max_wait;
        batch.push(first);
        while batch.len() < config.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match requests.recv_timeout(left) {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        answer(embedder, &mut batch);
    }
}

/// Embeds the batch and replies to each request; callers that gave up are skipped.
fn answer(embedder: &Embedder, batch: &mut Vec<Request>) {
    batch.retain(|r| !r.reply.is_closed());
    let texts: Vec<&str> = batch.iter().map(|r| r.text.as_str()).collect();
    let size = texts.len();
    match embedder.embed_batch(&texts) {
        Ok(embeddings) => {
            for (request, embedding) in batch.drain(..).zip(embeddings) {
                // A caller that stopped waiting has nobody to tell.
                let _ = request.reply.send(Ok((embedding, size)));
            }
        }
        // One bad text must not fail its neighbours: retry each alone for its own answer.
        Err(_) => {
            for request in batch.drain(..) {
                let _ = request
                    .reply
                    .send(embedder.embed(&request.text).map(|e| (e, 1)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::ai::EmbedderOptions;

    fn embedder() -> Embedder {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(Embedder::DEFAULT_DIR);
        Embedder::load(dir, EmbedderOptions { threads: 2 }).expect("the model in models/ loads")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_get_their_own_embeddings() {
        let embedder = embedder();
        let texts: Vec<String> = (0..40)
            .map(|i| format!("my ride number {i} was late"))
            .collect();
        let alone: Vec<Embedding> = texts
            .iter()
            .map(|t| embedder.embed(t).expect("embeds"))
            .collect();
        let handle = EmbedHandle::spawn(embedder, WorkerConfig::default()).expect("spawns");
        let tasks: Vec<_> = texts
            .iter()
            .map(|t| {
                let (handle, t) = (handle.clone(), t.clone());
                tokio::spawn(async move { handle.embed(t).await })
            })
            .collect();
        for (task, want) in tasks.into_iter().zip(&alone) {
            let got = task.await.expect("task runs").expect("embeds");
            assert!(got.cosine(want) > 0.99999, "{}", got.cosine(want));
        }
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_not_buffered() {
        let config = WorkerConfig {
            max_batch: 1,
            max_wait: Duration::ZERO,
            queue_capacity: 1,
        };
        let handle = EmbedHandle::spawn(embedder(), config).expect("spawns");
        let long = "a long message about a refund ".repeat(40);
        let calls: Vec<_> = (0..16)
            .map(|_| {
                let (handle, text) = (handle.clone(), long.clone());
                tokio::spawn(async move { handle.embed(text).await })
            })
            .collect();
        let mut overloaded = 0;
        for call in calls {
            match call.await.expect("task runs") {
                Err(AiError::Overloaded) => overloaded += 1,
                other => assert!(other.is_ok(), "{other:?}"),
            }
        }
        assert!(
            overloaded > 0,
            "16 callers on a queue of 1 must see overload"
        );
    }
}
