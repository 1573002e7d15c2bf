//! The encoder's own threads. Work is split into exactly one part per thread with
//! `rayon::join`, never into many small tasks: at batch 1 the matrices are tiny and per-task
//! overhead would eat the gain.

use std::ops::Range;

use crate::ai::AiError;

pub(crate) struct Pool {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl Pool {
    pub(crate) fn new(threads: usize) -> Result<Self, AiError> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("switchboard-bert-{i}"))
            .build()
            .map_err(|e| AiError::Threads(Box::new(e)))?;
        Ok(Self { pool, threads })
    }

    /// Runs `f` inside the pool, so that the splits below find their threads.
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// Calls `f` on disjoint ranges covering `0..items`, one per thread, in parallel.
    pub(crate) fn split(&self, items: usize, f: &(impl Fn(Range<usize>) + Sync)) {
        let parts = self.threads.min(items).max(1);
        split_parts(0, parts, items, parts, f);
    }

    /// Calls `f(first_row, rows)` on disjoint runs of rows of `out`, one run per thread.
    pub(crate) fn split_rows(
        &self,
        out: &mut [f32],
        row_len: usize,
        f: &(impl Fn(usize, &mut [f32]) + Sync),
    ) {
        let rows = out.len() / row_len.max(1);
        let parts = self.threads.min(rows).max(1);
        split_rows_parts(out, 0, rows, row_len, parts, f);
    }
}

fn part_start(part: usize, parts: usize, items: usize) -> usize {
    part * items / parts
}

fn split_parts(
    first: usize,
    count: usize,
    items: usize,
    parts: usize,
    f: &(impl Fn(Range<usize>) + Sync),
) {
    if count == 1 {
        f(part_start(first, parts, items)..part_start(first + 1, parts, items));
        return;
    }
    let half = count / 2;
    rayon::join(
        || split_parts(first, half, items, parts, f),
        || split_parts(first + half, count - half, items, parts, f),
    );
}

fn split_rows_parts(
    out: &mut [f32],
    first_row: usize,
    rows: usize,
    row_len: usize,
    parts: usize,
    f: &(impl Fn(usize, &mut [f32]) + Sync),
) {
    if parts == 1 {
        f(first_row, out);
        return;
    }
    let left_parts = parts / 2;
    let left_rows = rows * left_parts / parts;
    let (left, right) = out.split_at_mut(left_rows * row_len);
    rayon::join(
        || split_rows_parts(left, first_row, left_rows, row_len, left_parts, f),
        || {
            split_rows_parts(
                right,
                first_row + left_rows,
                rows - left_rows,
                row_len,
                parts - left_parts,
                f,
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn split_covers_every_item_once() {
        let pool = Pool::new(3).expect("a 3-thread pool can be built");
        for items in [0, 1, 2, 7, 100] {
            let seen = Mutex::new(vec![0u32; items]);
            pool.install(|| {
                pool.split(items, &|range| {
                    let mut seen = seen.lock().expect("no panics while held");
                    range.for_each(|i| seen[i] += 1);
                })
            });
            assert!(
                seen.into_inner()
                    .expect("not poisoned")
                    .iter()
                    .all(|&n| n == 1)
            );
        }
    }

    #[test]
    fn split_rows_hands_out_matching_rows() {
        let pool = Pool::new(2).expect("a 2-thread pool can be built");
        let mut out = vec![0.0f32; 5 * 3];
        pool.install(|| {
            pool.split_rows(&mut out, 3, &|first, rows| {
                for (i, row) in rows.chunks_mut(3).enumerate() {
                    row.fill((first + i) as f32);
                }
            })
        });
        let expected: Vec<f32> = (0..5).flat_map(|r| [r as f32; 3]).collect();
        assert_eq!(out, expected);
    }
}
