//! Exact nearest-neighbour search over a collection's vectors, in process.
//!
//! A collection's vectors of one model are one row-major f32 [`Matrix`]. Scoring every row in
//! f32 reads the whole matrix per query (147 MiB at 100,000 rows of 384 dimensions), so a
//! search makes two passes:
//!
//! 1. **A quantised first pass.** Each row is also held as 8-bit integers (`codes`, a quarter
//!    of the memory) with its scale, and the query as 16-bit integers. The integer dot product
//!    gives every row an approximate score, and a proven bound on how far that can be from the
//!    row's exact f32 score (see [`Bounds`]): the row's rounding error and norm, the query's
//!    rounding error and norm, and the floating-point error of both computations.
//! 2. **Exact rescoring.** Let `L` be the `n`-th best lower bound (approximate score minus its
//!    bound). The `n` best rows all score at least `L` exactly, so every row whose upper bound
//!    reaches `L` is scored again with the same f32 dot product as before, and the `n` best of
//!    those are the result: the same rows, scores and order (ties to the earlier row) as
//!    scoring every row exactly. A test compares the two, ties and odd rows included.
//!
//! A row that is not finite is always rescored; a query that is not finite is scored exactly
//! on every row. Large matrices are split across threads, each keeping its own best bounds
//! and candidates.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

/// A collection's vectors of one model, row-major, with each row's chunk and document.
pub(crate) struct Matrix {
    pub created_at: i64,
    pub revision: i64,
    pub dims: usize,
    pub chunk_ids: Vec<i64>,
    /// Index into `doc_meta` per row.
    pub docs: Vec<u32>,
    pub doc_meta: Vec<BTreeMap<String, String>>,
    pub values: Vec<f32>,
    /// The rows quantised, made by [`Matrix::seal`]; without it every row is scored in f32.
    quant: Option<Quantised>,
}

/// The rows of a matrix as 8-bit codes, with what bounds their error.
struct Quantised {
    /// Row-major, `dims` per row: `round(value / scale)`, in -127..=127.
    codes: Vec<i8>,
    /// Per row: max |value| / 127.
    scale: Vec<f32>,
    /// Per row: at least the L2 norm of `row - scale * codes` (infinite for a row that is
    /// not finite: always rescored).
    error: Vec<f32>,
    /// Per row: at least `error` plus the row's L2 norm.
    reach: Vec<f32>,
    /// The largest finite `reach`.
    max_reach: f32,
}

/// Largest code of a row.
const ROW_CODE: f32 = 127.0;
/// Largest code of a query (the sum of `dims` products must stay within i32: see
/// [`query_code_max`]).
const QUERY_CODE: f32 = 32_767.0;

impl Matrix {
    /// An empty matrix of `dims` dimensions.
    pub fn new(
        created_at: i64,
        revision: i64,
        dims: usize,
        doc_meta: Vec<BTreeMap<String, String>>,
    ) -> Matrix {
        Matrix {
            created_at,
            revision,
            dims,
            chunk_ids: Vec::new(),
            docs: Vec::new(),
            doc_meta,
            values: Vec::new(),
            quant: None,
        }
    }

    /// Rows in the matrix.
    pub fn rows(&self) -> usize {
        self.chunk_ids
            .len()
            .min(self.docs.len())
            .min(self.values.len() / self.dims.max(1))
    }

    /// Quantises the rows for the first pass (once all rows are in).
    pub fn seal(&mut self) {
        let dims = self.dims;
        if dims == 0 {
            return;
        }
        let rows = self.rows();
        let mut q = Quantised {
            codes: Vec::with_capacity(rows * dims),
            scale: Vec::with_capacity(rows),
            error: Vec::with_capacity(rows),
            reach: Vec::with_capacity(rows),
            max_reach: 0.0,
        };
        for row in self.values[..rows * dims].chunks_exact(dims) {
            if !row.iter().all(|x| x.is_finite()) {
                q.codes.extend(std::iter::repeat_n(0, dims));
                q.scale.push(0.0);
                q.error.push(f32::INFINITY);
                q.reach.push(f32::INFINITY);
                continue;
            }
            let max = row.iter().fold(0f32, |m, x| m.max(x.abs()));
            let scale = max / ROW_CODE;
            let (mut err2, mut norm2) = (0f64, 0f64);
            for &x in row {
                let code = if scale > 0.0 {
                    (x / scale).round().clamp(-ROW_CODE, ROW_CODE)
                } else {
                    0.0
                };
                // The code is a whole number in -127..=127: the cast is exact.
                q.codes.push(code as i8);
                let d = f64::from(x) - f64::from(scale) * f64::from(code);
                err2 += d * d;
                norm2 += f64::from(x) * f64::from(x);
            }
            let (err, norm) = (up(err2.sqrt()), up(norm2.sqrt()));
            q.scale.push(scale);
            q.error.push(err);
            let reach = up(f64::from(err) + f64::from(norm));
            q.reach.push(reach);
            if reach.is_finite() {
                q.max_reach = q.max_reach.max(reach);
            }
        }
        self.quant = Some(q);
    }
}

/// `x` as an f32 no smaller than it (computed in f64, where the little error left is far
/// below the margin).
fn up(x: f64) -> f32 {
    (x * (1.0 + 1e-6)) as f32
}

/// The largest query code for `dims` dimensions: `dims * 127 * code` must fit in an i32.
fn query_code_max(dims: usize) -> f32 {
    let fit = (i32::MAX as f64) / (f64::from(ROW_CODE) * dims.max(1) as f64);
    fit.floor().min(f64::from(QUERY_CODE)) as f32
}

/// The query as integers, with what bounds a row's error.
struct Query {
    codes: Vec<i16>,
    /// `value ≈ scale * code`.
    scale: f32,
    /// A row's approximate score is exact within `(reach * per_reach + error * per_error)`.
    bounds: Bounds,
    /// The query's L2 norm.
    norm: f64,
}

/// What the error of a row's approximate score is bounded by.
///
/// With the row `r = s·c + δ` (`‖δ‖ ≤ ρ`, the row's `error`) and the query `q = t·k + ε`
/// (`‖ε‖ ≤ e`), the real dot product is `s·t·(c·k) + s·(c·ε) + δ·q`; Cauchy–Schwarz bounds the
/// last two by `(‖r‖ + ρ)·e` and `ρ·‖q‖`. The f32 dot product the search ranks by differs
/// from the real one by at most `(dims + 17)·ε_f32·‖r‖·‖q‖` (products and sums in 16 lanes),
/// and the approximate score (`s·(t·i)` with `i` exact) from `s·t·(c·k)` by at most
/// `4·ε_f32·(‖r‖ + ρ)(‖q‖ + e)`. Together, with `reach = ‖r‖ + ρ` and `g = (dims + 21)·ε_f32`:
/// `|exact − approx| ≤ reach·(e + g·(‖q‖ + e)) + ρ·‖q‖`, widened by 0.1 % for the rounding of
/// the bound itself.
#[derive(Clone, Copy)]
struct Bounds {
    per_reach: f32,
    per_error: f32,
}

impl Query {
    /// `None` when the query is not finite (every row is then scored exactly).
    fn new(q: &[f32]) -> Option<Query> {
        if !q.iter().all(|x| x.is_finite()) {
            return None;
        }
        let dims = q.len();
        let max = q.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = max / query_code_max(dims);
        let (mut err2, mut norm2) = (0f64, 0f64);
        let mut codes = Vec::with_capacity(dims);
        for &x in q {
            let code = if scale > 0.0 {
                (x / scale).round().clamp(-QUERY_CODE, QUERY_CODE)
            } else {
                0.0
            };
            // A whole number within i16: the cast is exact.
            codes.push(code as i16);
            let d = f64::from(x) - f64::from(scale) * f64::from(code);
            err2 += d * d;
            norm2 += f64::from(x) * f64::from(x);
        }
        let (e, norm) = (err2.sqrt(), norm2.sqrt());
        let g = (dims as f64 + 21.0) * f64::from(f32::EPSILON);
        let widen = 1.001;
        Some(Query {
            codes,
            scale,
            bounds: Bounds {
                per_reach: up((e + g * (norm + e)) * widen),
                per_error: up(norm * widen),
            },
            norm,
        })
    }
}

/// The dot product, in 16 independent lanes so that the compiler keeps it in vector
/// registers (the workspace builds for baseline x86-64: four SSE accumulators).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..LANES {
            lanes[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for (x, y) in ar.iter().zip(br) {
        sum += x * y;
    }
    sum
}

/// The integer dot product of a row's codes and the query's, in 16 lanes (SSE2's `pmaddwd`
/// in the compiled code). No overflow: `|code| ≤ 127`, `|query code| ≤` [`query_code_max`].
fn dot_codes(a: &[i8], b: &[i16]) -> i32 {
    const LANES: usize = 16;
    let mut lanes = [0i32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..LANES {
            lanes[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    let mut sum: i32 = lanes.iter().sum();
    for (x, y) in ar.iter().zip(br) {
        sum += i32::from(*x) * i32::from(*y);
    }
    sum
}

/// Rows a thread scores at least: below twice this, one thread scores them all (spawning one
/// costs tens of microseconds; the first pass over 32,768 rows of 384 dimensions takes about
/// a millisecond).
const ROWS_PER_THREAD: usize = 32_768;
/// Threads one search scores with at most.
const MAX_THREADS: usize = 8;

/// A row's score and index, ordered worst first: a lower score, or the same score at a later
/// row (so that ties go to the earlier row, as the sort of the result does).
#[derive(Clone, Copy, PartialEq)]
struct Scored(f32, usize);

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Scored) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Scored) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A lower bound, ordered so that a heap's top is the smallest.
#[derive(Clone, Copy, PartialEq)]
struct Low(f32);

impl Eq for Low {}

impl Ord for Low {
    fn cmp(&self, other: &Low) -> Ordering {
        other.0.total_cmp(&self.0)
    }
}

impl PartialOrd for Low {
    fn partial_cmp(&self, other: &Low) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What the first pass over some rows found: the best `n` lower bounds, and every row whose
/// upper bound reached the `n`-th best lower bound as it was when the row was read.
struct Pass {
    lows: Vec<f32>,
    candidates: Vec<(usize, f32)>,
}

/// The first pass over rows `start..end` whose document `allowed` lets through.
fn first_pass(
    m: &Matrix,
    qz: &Quantised,
    q: &Query,
    allowed: Option<&[bool]>,
    (start, end): (usize, usize),
    n: usize,
) -> Pass {
    let dims = m.dims;
    let mut lows: BinaryHeap<Low> = BinaryHeap::with_capacity(n + 1);
    let mut candidates = Vec::new();
    let b = q.bounds;
    let rows = qz.codes[start * dims..end * dims].chunks_exact(dims);
    for (i, codes) in (start..end).zip(rows) {
        if let Some(mask) = allowed
            && !mask.get(m.docs[i] as usize).copied().unwrap_or(false)
        {
            continue;
        }
        let approx = qz.scale[i] * (q.scale * dot_codes(codes, &q.codes) as f32);
        let bound = qz.reach[i] * b.per_reach + qz.error[i] * b.per_error;
        let (low, high) = (approx - bound, approx + bound);
        let threshold = if lows.len() < n {
            f32::NEG_INFINITY
        } else {
            lows.peek().map_or(f32::NEG_INFINITY, |l| l.0)
        };
        // NaN never compares: a row with an infinite bound has `high` infinite or NaN.
        if high >= threshold || high.is_nan() {
            candidates.push((i, high));
        }
        if !low.is_nan() {
            if lows.len() < n {
                lows.push(Low(low));
            } else if let Some(mut worst) = lows.peek_mut()
                && low > worst.0
            {
                *worst = Low(low);
            }
        }
    }
    Pass {
        lows: lows.into_iter().map(|l| l.0).collect(),
        candidates,
    }
}

/// The best `n` of rows `start..end` whose document `allowed` lets through, scored in f32, in
/// no order: a bounded heap whose top is the worst kept, so a row that does not beat it costs
/// one comparison.
fn best_rows(
    m: &Matrix,
    q: &[f32],
    allowed: Option<&[bool]>,
    rows: impl Iterator<Item = usize>,
    n: usize,
) -> Vec<Scored> {
    let dims = m.dims.max(1);
    let mut heap: BinaryHeap<Scored> = BinaryHeap::with_capacity(n + 1);
    for i in rows {
        if let Some(mask) = allowed
            && !mask.get(m.docs[i] as usize).copied().unwrap_or(false)
        {
            continue;
        }
        let s = dot(&m.values[i * dims..(i + 1) * dims], q);
        let new = Scored(s, i);
        if heap.len() < n {
            heap.push(new);
        } else if let Some(mut worst) = heap.peek_mut()
            && new < *worst
        {
            *worst = new;
        }
    }
    heap.into_vec()
}

/// Splits `rows` rows across threads and runs `work` on each part; the parts' results in
/// order.
fn split<T: Send>(rows: usize, work: impl Fn(usize, usize) -> T + Sync) -> Vec<T> {
    let threads = if rows >= 2 * ROWS_PER_THREAD {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(rows / ROWS_PER_THREAD)
            .clamp(1, MAX_THREADS)
    } else {
        1
    };
    if threads == 1 {
        return vec![work(0, rows)];
    }
    let per = rows.div_ceil(threads);
    let work = &work;
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads)
            .map(|t| {
                let (start, end) = ((t * per).min(rows), ((t + 1) * per).min(rows));
                scope.spawn(move || work(start, end))
            })
            .collect();
        let mut all = vec![work(0, per.min(rows))];
        for h in others {
            match h.join() {
                Ok(part) => all.push(part),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        all
    })
}

/// The `n` rows most similar to `q` (cosine: the vectors are normalised) whose document
/// passes `filter`, best first, with their f32 dot products. Exact: the same as scoring every
/// row in f32 (see the module's notes).
pub(crate) fn nearest(
    m: &Matrix,
    q: &[f32],
    filter: &BTreeMap<String, String>,
    n: usize,
) -> Vec<(i64, f64)> {
    let rows = m.rows();
    if n == 0 || rows == 0 || q.len() != m.dims {
        return Vec::new();
    }
    // The filter is decided once per document, not per row.
    let mask: Option<Vec<bool>> = (!filter.is_empty()).then(|| {
        m.doc_meta
            .iter()
            .map(|meta| filter.iter().all(|(k, v)| meta.get(k) == Some(v)))
            .collect()
    });
    let allowed = mask.as_deref();
    // The bounds hold while no f32 dot product can overflow (`|r·q| ≤ ‖r‖·‖q‖`): with
    // values beyond that, every row is scored exactly.
    let quantised = m
        .quant
        .as_ref()
        .filter(|qz| qz.scale.len() == rows)
        .zip(Query::new(q))
        .filter(|(qz, query)| f64::from(qz.max_reach) * query.norm < 1e36);
    let mut found: Vec<Scored> = match quantised {
        Some((qz, query)) => {
            let passes = split(rows, |start, end| {
                first_pass(m, qz, &query, allowed, (start, end), n)
            });
            // The n-th best lower bound over all rows: every one of the n best rows scores at
            // least that, so its upper bound reaches it.
            let mut lows: Vec<f32> = passes.iter().flat_map(|p| p.lows.iter().copied()).collect();
            let threshold = if lows.len() < n {
                f32::NEG_INFINITY
            } else {
                lows.sort_unstable_by(|a, b| b.total_cmp(a));
                lows[n - 1]
            };
            let candidates = passes.iter().flat_map(|p| {
                p.candidates
                    .iter()
                    .filter(|(_, high)| *high >= threshold || high.is_nan())
                    .map(|(i, _)| *i)
            });
            best_rows(m, q, None, candidates, n)
        }
        None => split(rows, |start, end| best_rows(m, q, allowed, start..end, n))
            .into_iter()
            .flatten()
            .collect(),
    };
    found.sort_unstable();
    found.truncate(n);
    found
        .into_iter()
        .map(|Scored(s, i)| (m.chunk_ids[i], f64::from(s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// A matrix of `rows` rows over `docs` documents, document `d` with metadata `part` =
    /// d % 3, its values from `value`.
    fn matrix_of(rows: usize, dims: usize, docs: usize, mut value: impl FnMut() -> f32) -> Matrix {
        let mut m = Matrix::new(
            0,
            1,
            dims,
            (0..docs)
                .map(|d| BTreeMap::from([("part".to_string(), (d % 3).to_string())]))
                .collect(),
        );
        m.chunk_ids = (0..rows as i64).map(|i| 1_000 + i).collect();
        m.docs = (0..rows).map(|i| (i % docs) as u32).collect();
        m.values = (0..rows * dims).map(|_| value()).collect();
        m.seal();
        m
    }

    /// Few distinct values, so that scores tie.
    fn matrix(rows: usize, dims: usize, docs: usize) -> Matrix {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        matrix_of(rows, dims, docs, move || {
            ((xorshift(&mut seed) >> 40) % 7) as f32 / 7.0 - 0.5
        })
    }

    /// Unit rows as an embedding model makes them: many scores close together.
    fn unit_matrix(rows: usize, dims: usize, seed: u64) -> Matrix {
        let mut s = seed;
        let mut m = matrix_of(rows, dims, 7, move || {
            (xorshift(&mut s) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        });
        for row in m.values.chunks_exact_mut(dims) {
            let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= n);
        }
        m.seal();
        m
    }

    /// Every row scored one by one and sorted: the reference `nearest` must equal.
    fn naive(
        m: &Matrix,
        q: &[f32],
        filter: &BTreeMap<String, String>,
        n: usize,
    ) -> Vec<(i64, f64)> {
        let mut all: Vec<(f32, usize)> = m
            .values
            .chunks_exact(m.dims)
            .enumerate()
            .filter(|(i, _)| {
                let meta = &m.doc_meta[m.docs[*i] as usize];
                filter.iter().all(|(k, v)| meta.get(k) == Some(v))
            })
            .map(|(i, row)| (dot(row, q), i))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.truncate(n);
        all.into_iter()
            .map(|(s, i)| (m.chunk_ids[i], f64::from(s)))
            .collect()
    }

    #[test]
    fn nearest_is_exact_on_one_thread_and_many() {
        let q: Vec<f32> = (0..8).map(|i| (i as f32 - 3.5) / 4.0).collect();
        let part1 = BTreeMap::from([("part".to_string(), "1".to_string())]);
        let nobody = BTreeMap::from([("part".to_string(), "9".to_string())]);
        // Below and above the rows that split the work across threads.
        for rows in [1, 57, 2 * ROWS_PER_THREAD + 123] {
            let m = matrix(rows, 8, 41);
            for n in [1, 20, 200] {
                assert_eq!(
                    nearest(&m, &q, &BTreeMap::new(), n),
                    naive(&m, &q, &BTreeMap::new(), n),
                    "{rows} rows, {n}"
                );
                assert_eq!(
                    nearest(&m, &q, &part1, n),
                    naive(&m, &q, &part1, n),
                    "{rows} rows, {n}, filtered"
                );
                assert!(nearest(&m, &q, &nobody, n).is_empty());
            }
        }
        assert!(nearest(&matrix(0, 8, 1), &q, &BTreeMap::new(), 5).is_empty());
    }

    #[test]
    fn nearest_is_exact_for_unit_vectors_of_model_sizes() {
        // 384 (all-MiniLM-L6-v2), a size that is not a multiple of the lanes, and a size
        // whose query codes must shrink to keep the integer sum within i32.
        for (dims, rows) in [(384, 3_000), (101, 2_000), (1_536, 700)] {
            let m = unit_matrix(rows, dims, 7 + dims as u64);
            for probe in [0, rows / 2, rows - 1] {
                // A query near a row, and one near nothing.
                let mut q: Vec<f32> = m.values[probe * dims..(probe + 1) * dims].to_vec();
                q[0] += 0.01;
                let far = unit_matrix(1, dims, 99).values;
                for q in [&q, &far] {
                    for n in [1, 20] {
                        assert_eq!(
                            nearest(&m, q, &BTreeMap::new(), n),
                            naive(&m, q, &BTreeMap::new(), n),
                            "{dims} dims, {rows} rows, top {n}"
                        );
                    }
                }
            }
        }
    }

    /// Results as comparable values (a NaN score equals itself).
    fn bits(found: Vec<(i64, f64)>) -> Vec<(i64, u64)> {
        found.into_iter().map(|(id, s)| (id, s.to_bits())).collect()
    }

    #[test]
    fn odd_rows_and_queries_stay_exact() {
        let mut m = unit_matrix(500, 32, 5);
        // A zero row, a row of one huge value, a row that is not finite, duplicates.
        m.values[0..32].fill(0.0);
        m.values[32..64].fill(0.0);
        m.values[32] = 1e30;
        m.values[64] = f32::NAN;
        let copy = m.values[320..352].to_vec();
        m.values[352..384].copy_from_slice(&copy);
        m.seal();
        let mut q = m.values[320..352].to_vec();
        for n in [1, 3, 20] {
            assert_eq!(
                bits(nearest(&m, &q, &BTreeMap::new(), n)),
                bits(naive(&m, &q, &BTreeMap::new(), n))
            );
        }
        let zero = vec![0.0; 32];
        assert_eq!(
            bits(nearest(&m, &zero, &BTreeMap::new(), 20)),
            bits(naive(&m, &zero, &BTreeMap::new(), 20))
        );
        q[3] = f32::INFINITY;
        assert_eq!(
            bits(nearest(&m, &q, &BTreeMap::new(), 20)),
            bits(naive(&m, &q, &BTreeMap::new(), 20))
        );
        // Values whose dot products overflow f32 (scored exactly, NaN and infinities ranked as
        // the exact sort ranks them).
        m.values[96] = 3e30;
        m.values[97] = -3e30;
        m.seal();
        let mut big = m.values[320..352].to_vec();
        big[0] = 1e10;
        big[1] = 1e10;
        assert_eq!(
            bits(nearest(&m, &big, &BTreeMap::new(), 20)),
            bits(naive(&m, &big, &BTreeMap::new(), 20))
        );
        // A query of another length finds nothing rather than reading out of bounds.
        assert!(nearest(&m, &[1.0; 8], &BTreeMap::new(), 5).is_empty());
    }

    #[test]
    fn the_first_pass_rescores_few_rows() {
        let m = unit_matrix(20_000, 384, 3);
        let q = m.values[384 * 77..384 * 78].to_vec();
        let qz = m.quant.as_ref().unwrap();
        let query = Query::new(&q).unwrap();
        let pass = first_pass(&m, qz, &query, None, (0, 20_000), 20);
        let mut lows = pass.lows.clone();
        lows.sort_by(|a, b| b.total_cmp(a));
        let kept = pass
            .candidates
            .iter()
            .filter(|(_, h)| *h >= lows[19])
            .count();
        assert!(kept < 2_000, "{kept} of 20,000 rows rescored");
    }

    #[test]
    fn dots_match_naive() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.05).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
        let c: Vec<i8> = (0..37).map(|i| (i * 7 % 255 - 127) as i8).collect();
        let d: Vec<i16> = (0..37)
            .map(|i| (i * 1_771 % 65_535 - 32_767) as i16)
            .collect();
        let naive: i64 = c
            .iter()
            .zip(&d)
            .map(|(x, y)| i64::from(*x) * i64::from(*y))
            .sum();
        assert_eq!(i64::from(dot_codes(&c, &d)), naive);
        let worst = vec![127i8; 1_536];
        let q = vec![query_code_max(1_536) as i16; 1_536];
        assert!(i64::from(dot_codes(&worst, &q)) <= i64::from(i32::MAX));
    }
}
