//! Vector search from memory: a node keeps each searched tenant's embeddings (per embedder) as one
//! flat array of unit vectors and compares a query against all of them, so an exact cosine search
//! over 100,000 chunks reads 150 MB of RAM instead of as many rows from the database.
//!
//! The copy is checked before every search against the tenant's knowledge version, a counter the
//! store bumps in the same transaction as every change to the tenant's chunks, on whatever node: a
//! stale copy is loaded again, so results are those of the store scan, only faster. Searches with
//! metadata filters, and tenants whose embeddings do not fit the configured budget, go to the store
//! ([`Store::nearest_chunks`]) instead. Copies are dropped least recently used first when the budget
//! would be exceeded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use agentd_core::{ChunkId, TenantId};
use agentd_store::{ChunkFilter, ScoredChunk, Store, StoreError};

/// One tenant's embeddings by one embedder, as of a knowledge version.
struct Index {
    version: i64,
    dimensions: usize,
    ids: Vec<ChunkId>,
    /// `ids.len()` unit vectors of `dimensions`, one after another.
    vectors: Vec<f32>,
    /// When it last served a search, in milliseconds since the cache was made.
    last_used: AtomicU64,
    /// A marker, holding no vectors: this version of the tenant's embeddings exceeds the budget,
    /// so searches go to the store without loading them again.
    too_large: bool,
}

impl Index {
    fn bytes(&self) -> usize {
        self.vectors.len() * 4 + self.ids.len() * std::mem::size_of::<ChunkId>()
    }

    /// The `limit` chunks nearest to `query` by cosine similarity, best first; none at 0 or below.
    fn nearest(&self, query: &[f32], limit: usize) -> Vec<ScoredChunk> {
        let Some(query) = unit(query) else {
            return Vec::new();
        };
        if query.len() != self.dimensions || limit == 0 {
            return Vec::new();
        }
        // The scan is bound by memory bandwidth, which one core does not saturate: large indexes
        // are split over the cores, each keeping its own best, merged after.
        let rows = self.ids.len();
        let parts = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(rows / PARALLEL_ROWS + 1)
            .max(1);
        let per_part = rows.div_ceil(parts).max(1);
        let mut best: Vec<(f32, usize)> = if parts == 1 {
            self.best_of(&query, 0..rows, limit)
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..parts)
                    .map(|part| {
                        let range = part * per_part..((part + 1) * per_part).min(rows);
                        let query = &query;
                        scope.spawn(move || self.best_of(query, range, limit))
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|handle| handle.join().unwrap_or_default())
                    .collect()
            })
        };
        best.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        best.truncate(limit);
        best.into_iter()
            .map(|(score, row)| ScoredChunk {
                chunk_id: self.ids[row],
                score: f64::from(score),
            })
            .collect()
    }
}

/// Rows from which a scan is split over the cores.
const PARALLEL_ROWS: usize = 20_000;

impl Index {
    /// The best `limit` rows of `rows` for the unit `query`, best first; none at 0 or below.
    fn best_of(
        &self,
        query: &[f32],
        rows: std::ops::Range<usize>,
        limit: usize,
    ) -> Vec<(f32, usize)> {
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(limit + 1);
        let start = rows.start;
        let vectors = &self.vectors[rows.start * self.dimensions..rows.end * self.dimensions];
        for (offset, vector) in vectors.chunks_exact(self.dimensions).enumerate() {
            let score = dot(query, vector);
            if score <= 0.0 || (best.len() == limit && best[limit - 1].0 >= score) {
                continue;
            }
            let at = best.partition_point(|(better, _)| *better >= score);
            best.insert(at, (score, start + offset));
            best.truncate(limit);
        }
        best
    }
}

/// `vector` scaled to length 1; `None` for the zero vector.
fn unit(vector: &[f32]) -> Option<Vec<f32>> {
    let norm = dot(vector, vector).sqrt();
    (norm > 0.0 && norm.is_finite()).then(|| vector.iter().map(|x| x / norm).collect())
}

/// The dot product, in eight independent sums so the compiler can keep them in vector registers.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (a_blocks, b_blocks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_blocks
        .remainder()
        .iter()
        .zip(b_blocks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_blocks.zip(b_blocks) {
        for lane in 0..8 {
            sums[lane] += x[lane] * y[lane];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// The embeddings this node holds in memory, by tenant and embedder.
pub(super) struct VectorCache {
    store: Arc<dyn Store>,
    /// The most bytes of embeddings held at once, over every tenant.
    budget: usize,
    started: Instant,
    indexes: Mutex<HashMap<(TenantId, String), Arc<Index>>>,
    /// Held while a copy is loaded, so concurrent searches of a stale tenant load it once.
    loading: tokio::sync::Mutex<()>,
}

impl VectorCache {
    pub(super) fn new(store: Arc<dyn Store>, budget_bytes: usize) -> Self {
        Self {
            store,
            budget: budget_bytes,
            started: Instant::now(),
            indexes: Mutex::new(HashMap::new()),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// The `limit` chunks of the tenant embedded by `embedder` nearest to `vector`, best first:
    /// from memory when the search has no filters and the tenant's embeddings fit the budget, else
    /// by the store's scan.
    pub(super) async fn nearest(
        &self,
        tenant: TenantId,
        embedder: &str,
        vector: &[f32],
        filter: &ChunkFilter,
        limit: u32,
    ) -> Result<Vec<ScoredChunk>, StoreError> {
        let cached = match filter.metadata.is_empty() && self.budget > 0 {
            true => self.current(tenant, embedder).await?,
            false => None,
        };
        let Some(index) = cached else {
            return self
                .store
                .nearest_chunks(tenant, embedder, vector, filter, limit)
                .await;
        };
        index
            .last_used
            .store(self.now(), std::sync::atomic::Ordering::Relaxed);
        let query = vector.to_vec();
        // About 40 million multiply-adds for 100,000 chunks of 384 dimensions: off the async threads.
        tokio::task::spawn_blocking(move || index.nearest(&query, limit as usize))
            .await
            .map_err(|err| StoreError::Corrupt {
                table: "knowledge_chunks",
                reason: format!("the vector search failed: {err}"),
            })
    }

    /// The tenant's index as of the store's current knowledge version, loaded if missing or stale;
    /// `None` when it does not fit the budget.
    async fn current(
        &self,
        tenant: TenantId,
        embedder: &str,
    ) -> Result<Option<Arc<Index>>, StoreError> {
        let key = (tenant, embedder.to_owned());
        let version = self.store.knowledge_version(tenant).await?;
        if let Some(index) = self.cached(&key, version) {
            return Ok((!index.too_large).then_some(index));
        }
        let _loading = self.loading.lock().await;
        // Another search may have loaded it while this one waited.
        let version = self.store.knowledge_version(tenant).await?;
        if let Some(index) = self.cached(&key, version) {
            return Ok((!index.too_large).then_some(index));
        }
        // The version is read before the rows: a change in between leaves the copy newer than
        // its version says, which only costs a reload.
        let rows = self.store.chunk_embeddings(tenant, embedder).await?;
        let index = build(version, rows, self.now());
        if index.bytes() > self.budget {
            tracing::info!(
                tenant = %tenant,
                embedder,
                bytes = index.bytes(),
                budget = self.budget,
                "the tenant's embeddings exceed knowledge.vector_cache_mb: vector search scans the store"
            );
        }
        Ok(admit(&mut self.lock(), key, index, self.budget))
    }

    fn cached(&self, key: &(TenantId, String), version: i64) -> Option<Arc<Index>> {
        self.lock()
            .get(key)
            .filter(|index| index.version == version)
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(TenantId, String), Arc<Index>>> {
        self.indexes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Puts `index` in `indexes`, dropping the least recently used ones until the budget holds; an index
/// larger than the whole budget is kept as a [`Index::too_large`] marker instead (and `None` is
/// answered), so the next searches of that version do not load it again.
fn admit(
    indexes: &mut HashMap<(TenantId, String), Arc<Index>>,
    key: (TenantId, String),
    index: Index,
    budget: usize,
) -> Option<Arc<Index>> {
    indexes.remove(&key);
    if index.bytes() > budget {
        let marker = Index {
            ids: Vec::new(),
            vectors: Vec::new(),
            too_large: true,
            ..index
        };
        indexes.insert(key, Arc::new(marker));
        return None;
    }
    let mut held: usize = indexes.values().map(|index| index.bytes()).sum();
    while held + index.bytes() > budget {
        let Some(oldest) = indexes
            .iter()
            .min_by_key(|(_, index)| index.last_used.load(Ordering::Relaxed))
            .map(|(key, _)| key.clone())
        else {
            break;
        };
        if let Some(dropped) = indexes.remove(&oldest) {
            held -= dropped.bytes();
        }
    }
    let index = Arc::new(index);
    indexes.insert(key, index.clone());
    Some(index)
}

/// The index of `rows`: unit vectors of the most common dimension (an embedder that changed its
/// size leaves chunks of another, which the store scan would skip too); zero vectors left out.
fn build(version: i64, rows: Vec<(ChunkId, Vec<f32>)>, now: u64) -> Index {
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for (_, vector) in &rows {
        *counts.entry(vector.len()).or_default() += 1;
    }
    let dimensions = counts
        .into_iter()
        .max_by_key(|&(dimensions, count)| (count, dimensions))
        .map(|(dimensions, _)| dimensions)
        .unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len());
    let mut vectors = Vec::with_capacity(rows.len() * dimensions);
    for (id, vector) in rows {
        if vector.len() != dimensions {
            continue;
        }
        if let Some(vector) = unit(&vector) {
            ids.push(id);
            vectors.extend_from_slice(&vector);
        }
    }
    Index {
        version,
        dimensions,
        ids,
        vectors,
        last_used: AtomicU64::new(now),
        too_large: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(rows: &[&[f32]]) -> (Index, Vec<ChunkId>) {
        let ids: Vec<ChunkId> = rows.iter().map(|_| ChunkId::new()).collect();
        let rows = ids
            .iter()
            .zip(rows)
            .map(|(id, vector)| (*id, vector.to_vec()))
            .collect();
        (build(1, rows, 0), ids)
    }

    #[test]
    fn nearest_ranks_by_cosine_and_leaves_out_the_unrelated() {
        let (index, ids) = index(&[
            &[1.0, 0.0, 0.0],
            &[3.0, 3.0, 0.0],
            &[0.0, 1.0, 0.0],
            &[-1.0, 0.0, 0.0],
            &[0.0, 0.0, 0.0],
            &[1.0, 0.0],
        ]);
        assert_eq!(
            index.ids.len(),
            4,
            "the zero vector and the odd size are out"
        );
        let found = index.nearest(&[2.0, 0.5, 0.0], 10);
        let order: Vec<ChunkId> = found.iter().map(|hit| hit.chunk_id).collect();
        assert_eq!(order, vec![ids[0], ids[1], ids[2]]);
        let expected = 2.0 / (2.0f64 * 2.0 + 0.25).sqrt();
        assert!((found[0].score - expected).abs() < 1e-6);
        assert_eq!(index.nearest(&[2.0, 0.5, 0.0], 1).len(), 1);
        assert!(index.nearest(&[1.0, 0.0], 10).is_empty());
        assert!(index.nearest(&[0.0, 0.0, 0.0], 10).is_empty());
    }

    #[test]
    fn a_scan_split_over_the_cores_finds_what_one_pass_finds() {
        let rows: Vec<Vec<f32>> = (0..PARALLEL_ROWS * 2 + 7)
            .map(|n| {
                (0..8)
                    .map(|d| ((n * 31 + d * 17) as f32 * 0.013).sin())
                    .collect()
            })
            .collect();
        let slices: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        let (index, ids) = index(&slices);
        let query = [0.3, -0.2, 0.9, 0.1, 0.0, 0.5, -0.7, 0.2];
        let unit_query = unit(&query).unwrap();
        let expected: Vec<ChunkId> = index
            .best_of(&unit_query, 0..ids.len(), 25)
            .into_iter()
            .map(|(_, row)| ids[row])
            .collect();
        let found: Vec<ChunkId> = index
            .nearest(&query, 25)
            .iter()
            .map(|hit| hit.chunk_id)
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn the_budget_drops_the_least_recently_used_and_marks_what_never_fits() {
        let tenant = |n: u8| (TenantId::new(), format!("embedder-{n}"));
        let (a, b, c, huge) = (tenant(1), tenant(2), tenant(3), tenant(4));
        let sized = |used: u64| {
            let (index, _) = index(&[&[1.0f32, 0.0, 0.0, 0.0][..]; 10]);
            index.last_used.store(used, Ordering::Relaxed);
            index
        };
        let one = sized(0).bytes();
        let budget = one * 2;
        let mut indexes = HashMap::new();
        assert!(admit(&mut indexes, a.clone(), sized(5), budget).is_some());
        assert!(admit(&mut indexes, b.clone(), sized(1), budget).is_some());
        // A third copy drops the least recently used (b), not the older one by insertion (a).
        assert!(admit(&mut indexes, c.clone(), sized(9), budget).is_some());
        assert!(indexes.contains_key(&a) && indexes.contains_key(&c));
        assert!(!indexes.contains_key(&b));

        // A copy larger than the whole budget is not held, but remembered as too large.
        let (big, _) = index(&[&[1.0f32, 0.0, 0.0, 0.0][..]; 30]);
        assert!(admit(&mut indexes, huge.clone(), big, budget).is_none());
        let marker = indexes.get(&huge).unwrap();
        assert!(marker.too_large && marker.vectors.is_empty() && marker.version == 1);
        assert!(
            indexes.contains_key(&a) && indexes.contains_key(&c),
            "nothing dropped for it"
        );
    }

    #[test]
    fn the_unrolled_dot_product_matches_the_plain_one() {
        let a: Vec<f32> = (0..389).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..389).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-3);
    }
}
