//! The order-event generator behind the `datagen` source: a byte-for-byte
//! port of the benchmark's reference generator `bench/gen_orders.py`.
//!
//! This module owns the *algorithm*: the Mersenne Twister (MT19937) seeded
//! exactly like CPython's `random.Random(int)`, CPython's `random()` double
//! construction, the Zipf customer distribution (an unnormalised CDF searched
//! with `bisect_right`), the event clock with its jitter and "very late"
//! rules, and the JSON line format. For the same parameters and the default
//! `clock_step_ms` of 1, the sequence of objects written by
//! [`OrdersGenerator::next_into`], each followed by `\n`, is byte-identical to
//! the file `python3 bench/gen_orders.py --seed S --customers C --zipf-s Z`
//! writes; the tests in this file check that against the script itself.
//!
//! It does not own pacing (events per second), batching, splitting the stream
//! across parallel readers, or newline/record framing: those live in the
//! datagen source around it, which calls [`OrdersGenerator::next_into`] once
//! per event.
//!
//! Compatibility notes (each is a place where a "natural" Rust choice would
//! silently change the bytes):
//!
//! * Every event consumes exactly seven `random()` draws, in the order
//!   step, customer, amount, currency, status, late, jitter, whether or not
//!   a draw's value ends up mattering.
//! * Zipf weights are `k ** -s` with an int `k` and a float `s`, which CPython
//!   evaluates as C `pow((double)k, -s)`; here `(k as f64).powf(-s)` calls the
//!   same libm `pow`. The weights are summed left to right in f64, like the
//!   Python loop, and the customer index is `bisect_right(cum, r * total)`.
//! * Python's `int(x)` on a non-negative float truncates, as does `as i64`.
//! * The customer lookup first consults a guide table (one entry per slice of
//!   `r`) and then binary-searches only the small range it gives; the result
//!   is exactly `bisect_right`'s, including ties and plateaus of the CDF (see
//!   `ZipfCdf::bisect_right` for why, and the tests for a check against a
//!   transcription of Python's `Lib/bisect.py`).
//! * Parameters gen_orders.py rejects have no Python counterpart to match:
//!   a negative `zipf_s` large enough to overflow `k ** -s` raises
//!   `OverflowError` there, while here the CDF becomes infinite (and the
//!   lookup degrades gracefully to a plain search).

use std::cmp::Ordering;

/// First value of the event clock (epoch milliseconds), `BASE_TS` in the script.
const DEFAULT_START_TS: i64 = 1_700_000_000_000;
/// Normal events: `ts = clock - U{0..=JITTER_MAX_MS}`.
const JITTER_MAX_MS: i64 = 4_000;
/// Probability that an event is "very late".
const LATE_PROB: f64 = 0.001;
/// Smallest lateness of a very late event: `ts = clock - U{LATE_MIN_MS..=LATE_MAX_MS}`.
const LATE_MIN_MS: i64 = 60_000;
/// Largest lateness of a very late event.
const LATE_MAX_MS: i64 = 120_000;

/// Parameters of the generator; `Default` gives gen_orders.py's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct OrdersParams {
    /// Seed of the Mersenne Twister, as `random.Random(seed)` (default 42).
    pub seed: u64,
    /// Number of distinct customers `c-1..=c-N`, Zipf-distributed by rank
    /// (default 10_000). Must be at least 1.
    pub customers: u32,
    /// Zipf exponent `s`: customer of rank `k` has weight `k^-s` (default 1.1).
    pub zipf_s: f64,
    /// Event-clock advance per event is `int(r * 3) * clock_step_ms` (0, 1 or 2 steps, mean 1 step);
    /// 1 reproduces gen_orders.py. A demo can use 1000 to cover hours of event time quickly.
    pub clock_step_ms: i64,
    /// Initial value of the event clock in epoch milliseconds (default
    /// 1_700_000_000_000, gen_orders.py's `BASE_TS`).
    pub start_ts: i64,
}

impl Default for OrdersParams {
    fn default() -> Self {
        Self {
            seed: 42,
            customers: 10_000,
            zipf_s: 1.1,
            clock_step_ms: 1,
            start_ts: DEFAULT_START_TS,
        }
    }
}

/// Deterministic generator of order events, one JSON object per call to
/// [`next_into`](Self::next_into).
pub struct OrdersGenerator {
    /// The random source, identical to CPython's `random.Random(seed)`.
    rng: Mt19937,
    /// The customer distribution.
    zipf: ZipfCdf,
    /// Current event clock (epoch milliseconds).
    clock: i64,
    /// Clock advance per step; see [`OrdersParams::clock_step_ms`].
    clock_step_ms: i64,
    /// Events generated so far.
    generated: u64,
}

impl OrdersGenerator {
    /// Creates a generator; precomputes the Zipf CDF once (O(customers)).
    ///
    /// # Panics
    ///
    /// If `params.customers` is 0 (gen_orders.py fails on that too).
    pub fn new(params: &OrdersParams) -> Self {
        assert!(
            params.customers > 0,
            "orders generator needs at least one customer"
        );
        Self {
            rng: Mt19937::from_python_int_seed(params.seed),
            zipf: ZipfCdf::new(params.customers, params.zipf_s),
            clock: params.start_ts,
            clock_step_ms: params.clock_step_ms,
            generated: 0,
        }
    }

    /// Appends the next event as one JSON object (no trailing newline) to `out` and returns its event_ts.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> i64 {
        // Exactly 7 draws per event, always in this order.
        let r_step = self.rng.random();
        let r_cust = self.rng.random();
        let r_amt = self.rng.random();
        let r_cur = self.rng.random();
        let r_status = self.rng.random();
        let r_late = self.rng.random();
        let r_jit = self.rng.random();

        self.generated += 1;
        let order_id = self.generated;
        self.clock += (r_step * 3.0) as i64 * self.clock_step_ms;

        let k = self.zipf.bisect_right(r_cust).min(self.zipf.len() - 1); // float edge guard
        let cents = (r_amt * 50_000.0) as u64 + 1; // 1 .. 50000 -> 0.01 .. 500.00
        let currency: &[u8] = if r_cur < 0.5 {
            b"USD"
        } else if r_cur < 0.8 {
            b"EUR"
        } else {
            b"GBP"
        };
        let status: &[u8] = if r_status < 0.7 {
            b"COMPLETED"
        } else if r_status < 0.9 {
            b"PENDING"
        } else {
            b"CANCELLED"
        };
        let ts = if r_late < LATE_PROB {
            self.clock - (LATE_MIN_MS + (r_jit * (LATE_MAX_MS - LATE_MIN_MS + 1) as f64) as i64)
        } else {
            self.clock - (r_jit * (JITTER_MAX_MS + 1) as f64) as i64
        };

        let mut line = Line::new();
        line.put(b"{\"order_id\":\"o-");
        line.put_u64(order_id);
        line.put(b"\",\"customer_id\":\"c-");
        line.put_u64(k as u64 + 1);
        line.put(b"\",\"amount\":");
        line.put_u64(cents / 100);
        let c = (cents % 100) as u8;
        line.put(&[b'.', b'0' + c / 10, b'0' + c % 10]);
        line.put(b",\"currency\":\"");
        line.put(currency);
        line.put(b"\",\"status\":\"");
        line.put(status);
        line.put(b"\",\"event_ts\":");
        line.put_i64(ts);
        line.put(b"}");
        out.extend_from_slice(line.as_bytes());
        ts
    }

    /// Number of events generated so far (the next order id is `generated() + 1`).
    pub fn generated(&self) -> u64 {
        self.generated
    }
}

/// Upper bound on the length of one event line: 84 bytes of keys and
/// punctuation, at most 20 + 10 + 6 + 3 + 9 + 20 bytes of values.
const MAX_LINE_LEN: usize = 160;

/// log2 of the largest number of buckets in [`ZipfCdf::guide`].
const MAX_GUIDE_BITS: u32 = 14;

/// gen_orders.py's Zipf CDF with its `bisect_right(cum, r * total)` lookup,
/// sped up by a guide table that gives the result's range for each of
/// `2^bits` equal slices of `r`.
struct ZipfCdf {
    /// `zipf_cdf(n, s)`: `cum[i]` is the sum of `k^-s` for k = 1..=i+1, summed
    /// in order in f64.
    cum: Vec<f64>,
    /// `cum[n - 1]`, the total weight.
    total: f64,
    /// `guide[b] = bisect_right(cum, (b / 2^bits) * total)` for b = 0..=2^bits.
    /// Empty when `total` is not finite, where the monotonicity the guide
    /// relies on does not hold; lookups then search all of `cum`.
    guide: Vec<u32>,
    /// `2^bits` as f64 (exactly representable).
    buckets: f64,
}

impl ZipfCdf {
    /// Builds the CDF of `n >= 1` ranks with exponent `s`, and its guide table.
    fn new(n: u32, s: f64) -> Self {
        let mut cum = Vec::with_capacity(n as usize);
        let mut acc = 0.0_f64;
        for k in 1..=n {
            // Python `k ** -s` (int ** float) is C `pow((double)k, -s)`.
            acc += f64::from(k).powf(-s);
            cum.push(acc);
        }
        let total = cum[cum.len() - 1];
        let bits = n.next_power_of_two().ilog2().min(MAX_GUIDE_BITS);
        let buckets = f64::from(1u32 << bits);
        let mut zipf = Self {
            cum,
            total,
            guide: Vec::new(),
            buckets,
        };
        if total.is_finite() {
            zipf.guide = (0..=1u32 << bits)
                .map(|b| zipf.bisect_right_in(0, zipf.cum.len(), f64::from(b) / buckets) as u32)
                .collect();
        }
        zipf
    }

    /// Number of ranks.
    fn len(&self) -> usize {
        self.cum.len()
    }

    /// Python `bisect.bisect_right(cum, r * total)` for `r` in [0, 1).
    ///
    /// Why the guide is exact: with `2^bits` buckets, `b / 2^bits` is an
    /// exact double, `b = floor(r * 2^bits)` is exact, and rounding is
    /// monotonic, so `b / 2^bits <= r < (b + 1) / 2^bits` implies
    /// `guide[b] <= bisect_right(cum, r * total) <= guide[b + 1]`; every
    /// entry before `guide[b]` is `<= r * total` and every entry from
    /// `guide[b + 1]` on is `> r * total`.
    #[inline]
    fn bisect_right(&self, r: f64) -> usize {
        if self.guide.is_empty() {
            return self.bisect_right_in(0, self.cum.len(), r);
        }
        let b = (r * self.buckets) as usize;
        self.bisect_right_in(self.guide[b] as usize, self.guide[b + 1] as usize, r)
    }

    /// `bisect.bisect_right(cum, r * total, lo, hi)`: `lo` plus the number of
    /// entries of `cum[lo..hi]` that are not greater than `r * total`.
    #[inline]
    fn bisect_right_in(&self, lo: usize, hi: usize, r: f64) -> usize {
        let x = r * self.total;
        // "not x < c" rather than `c <= x`: the comparison bisect_right makes,
        // so that a NaN `x` goes right past every entry, as in Python.
        lo + self.cum[lo..hi].partition_point(|c| x.partial_cmp(c) != Some(Ordering::Less))
    }
}

/// `"00" "01" ... "99"`: the two decimal digits of every number below 100.
const DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// One event line assembled on the stack and appended to the output in a
/// single copy (cheaper than many small appends to a `Vec`).
struct Line {
    /// The bytes; only `buf[..len]` is meaningful.
    buf: [u8; MAX_LINE_LEN],
    /// Number of bytes written so far.
    len: usize,
}

impl Line {
    /// An empty line.
    #[inline(always)]
    fn new() -> Self {
        Self {
            buf: [0; MAX_LINE_LEN],
            len: 0,
        }
    }

    /// Appends `s`.
    #[inline(always)]
    fn put(&mut self, s: &[u8]) {
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    /// Appends the decimal digits of `v` (Python `%d`), two at a time from
    /// the right.
    #[inline(always)]
    fn put_u64(&mut self, mut v: u64) {
        let n = v.checked_ilog10().map_or(1, |l| l as usize + 1);
        let mut end = self.len + n;
        while v >= 100 {
            let d = (v % 100) as usize * 2;
            v /= 100;
            end -= 2;
            self.buf[end..end + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
        }
        if v >= 10 {
            let d = v as usize * 2;
            self.buf[end - 2..end].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
        } else {
            self.buf[end - 1] = b'0' + v as u8;
        }
        self.len += n;
    }

    /// Appends the decimal digits of `v`, with a leading `-` if negative (Python `%d`).
    #[inline(always)]
    fn put_i64(&mut self, v: i64) {
        if v < 0 {
            self.put(b"-");
        }
        self.put_u64(v.unsigned_abs());
    }

    /// The bytes written so far.
    #[inline(always)]
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Number of 32-bit words of MT19937 state.
const MT_N: usize = 624;
/// MT19937 middle word offset.
const MT_M: usize = 397;
/// MT19937 twist matrix constant.
const MT_MATRIX_A: u32 = 0x9908_b0df;
/// Most significant bit of a state word.
const MT_UPPER_MASK: u32 = 0x8000_0000;
/// Least significant 31 bits of a state word.
const MT_LOWER_MASK: u32 = 0x7fff_ffff;

/// MT19937 exactly as in CPython's `Modules/_randommodule.c`.
struct Mt19937 {
    /// The 624-word state.
    state: [u32; MT_N],
    /// Index of the next word to temper and return; `MT_N` means "twist first".
    index: usize,
}

impl Mt19937 {
    /// CPython's `init_genrand(s)`.
    fn init_genrand(s: u32) -> Self {
        let mut state = [0u32; MT_N];
        state[0] = s;
        for i in 1..MT_N {
            state[i] = 1_812_433_253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, index: MT_N }
    }

    /// CPython's `init_by_array(init_key)`.
    fn init_by_array(key: &[u32]) -> Self {
        debug_assert!(!key.is_empty());
        let mut g = Self::init_genrand(19_650_218);
        let mt = &mut g.state;
        let mut i = 1usize;
        let mut j = 0usize;
        for _ in 0..MT_N.max(key.len()) {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= MT_N {
                mt[0] = mt[MT_N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..MT_N - 1 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= MT_N {
                mt[0] = mt[MT_N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000; // MSB is 1, assuring a non-zero initial array
        g
    }

    /// CPython's `random_seed` for a non-negative int: the key is the seed's
    /// 32-bit little-endian chunks, without leading zero chunks, and `[0]`
    /// for 0.
    fn from_python_int_seed(seed: u64) -> Self {
        let lo = seed as u32;
        let hi = (seed >> 32) as u32;
        if hi == 0 {
            Self::init_by_array(&[lo])
        } else {
            Self::init_by_array(&[lo, hi])
        }
    }

    /// Regenerates all 624 state words (the first half of CPython's `genrand_uint32`).
    fn twist(&mut self) {
        #[inline(always)]
        fn mix(upper: u32, lower: u32, far: u32) -> u32 {
            let y = (upper & MT_UPPER_MASK) | (lower & MT_LOWER_MASK);
            far ^ (y >> 1) ^ ((y & 1).wrapping_neg() & MT_MATRIX_A)
        }
        let mt = &mut self.state;
        for kk in 0..MT_N - MT_M {
            mt[kk] = mix(mt[kk], mt[kk + 1], mt[kk + MT_M]);
        }
        for kk in MT_N - MT_M..MT_N - 1 {
            mt[kk] = mix(mt[kk], mt[kk + 1], mt[kk + MT_M - MT_N]);
        }
        mt[MT_N - 1] = mix(mt[MT_N - 1], mt[0], mt[MT_M - 1]);
        self.index = 0;
    }

    /// CPython's `genrand_uint32`: the next tempered 32-bit output.
    #[inline]
    fn next_u32(&mut self) -> u32 {
        if self.index >= MT_N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// CPython's `random.random()`: a double in [0, 1) with 53 random bits.
    #[inline]
    fn random(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) * (1.0 / 9_007_199_254_740_992.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    /// `n` values of `random()` from a generator seeded like `random.Random(seed)`.
    fn randoms(seed: u64, n: usize) -> Vec<f64> {
        let mut mt = Mt19937::from_python_int_seed(seed);
        (0..n).map(|_| mt.random()).collect()
    }

    #[test]
    fn random_matches_cpython() {
        // python3 -c "import random; r=random.Random(42); print([repr(r.random()) for _ in range(5)])"
        assert_eq!(
            randoms(42, 5),
            [
                0.6394267984578837,
                0.025010755222666936,
                0.27502931836911926,
                0.22321073814882275,
                0.7364712141640124,
            ]
        );
        // python3 -c "import random; r=random.Random(0); print([repr(r.random()) for _ in range(5)])"
        assert_eq!(
            randoms(0, 5),
            [
                0.8444218515250481,
                0.7579544029403025,
                0.420571580830845,
                0.25891675029296335,
                0.5112747213686085,
            ]
        );
        // python3 -c "import random; r=random.Random(2**40+5); print([repr(r.random()) for _ in range(5)])"
        assert_eq!(
            randoms((1 << 40) + 5, 5),
            [
                0.5043802970418443,
                0.2686044399723282,
                0.9257865475671585,
                0.530959239292452,
                0.8179643216302002,
            ]
        );
        // python3 -c "import random; r=random.Random(2**64-1); print([repr(r.random()) for _ in range(3)])"
        assert_eq!(
            randoms(u64::MAX, 3),
            [
                0.021825695401270107,
                0.3380953268613758,
                0.21196748656082065
            ]
        );
    }

    #[test]
    fn random_crosses_twist_boundaries() {
        // 1000 draws = 2000 words, i.e. three twists; the last one must still match.
        // python3 -c "import random; r=random.Random(42); [r.random() for _ in range(999)]; print(repr(r.random()))"
        assert_eq!(randoms(42, 1000)[999], 0.8554501933059546);
    }

    /// `n` lines from the generator, each with its trailing newline, as one buffer.
    fn generate(params: &OrdersParams, n: usize) -> Vec<u8> {
        let mut g = OrdersGenerator::new(params);
        let mut out = Vec::new();
        for _ in 0..n {
            g.next_into(&mut out);
            out.push(b'\n');
        }
        assert_eq!(g.generated(), n as u64);
        out
    }

    /// Runs bench/gen_orders.py with `args` and returns the file it writes.
    fn run_reference(events: usize, args: &[&str]) -> Vec<u8> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/gen_orders.py");
        let out: PathBuf = std::env::temp_dir().join(format!(
            "sluice-orders-ref-{}-{}.jsonl",
            std::process::id(),
            args.join("_")
        ));
        let run = Command::new("python3")
            .arg(script)
            .arg("--events")
            .arg(events.to_string())
            .args(args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run python3 ({e}); python3 is required to check the generator \
                     against {script}"
                )
            });
        assert!(
            run.status.success(),
            "{script} failed ({}): {}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        );
        let bytes = std::fs::read(&out).expect("read reference output");
        let _ = std::fs::remove_file(&out);
        bytes
    }

    /// Asserts that two JSON-lines buffers are equal, reporting the first differing line.
    fn assert_same_lines(ours: &[u8], reference: &[u8]) {
        let mut a = ours.split(|&b| b == b'\n');
        let mut b = reference.split(|&b| b == b'\n');
        for line_no in 1.. {
            match (a.next(), b.next()) {
                (None, None) => break,
                (x, y) => assert_eq!(
                    x.map(String::from_utf8_lossy),
                    y.map(String::from_utf8_lossy),
                    "line {line_no} differs (left: ours, right: gen_orders.py)"
                ),
            }
        }
        assert_eq!(ours, reference);
    }

    #[test]
    fn byte_identical_to_gen_orders_py() {
        let n = 20_000;
        let params = OrdersParams::default();
        assert_same_lines(&generate(&params, n), &run_reference(n, &["--seed", "42"]));

        let params = OrdersParams {
            seed: 7,
            customers: 50,
            zipf_s: 0.8,
            ..OrdersParams::default()
        };
        assert_same_lines(
            &generate(&params, n),
            &run_reference(n, &["--seed", "7", "--customers", "50", "--zipf-s", "0.8"]),
        );
    }

    /// Python's `bisect.bisect_right(a, x)`, transcribed from Lib/bisect.py.
    fn python_bisect_right(a: &[f64], x: f64) -> usize {
        let (mut lo, mut hi) = (0, a.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if x < a[mid] {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    #[test]
    fn zipf_guide_agrees_with_plain_bisect() {
        let mut mt = Mt19937::from_python_int_seed(1);
        let cases = [
            (1, 1.1),
            (50, 0.8),
            (10_000, 1.1),
            (100_000, 1.1),
            // Uniform weights: cum is 1, 2, 3, ... and r * total often lands
            // exactly on an entry (a tie bisect_right must put to the left).
            (4096, 0.0),
            (3000, 0.0),
            // Weights vanish next to the running sum: cum has long plateaus.
            (5000, 50.0),
            (5000, f64::INFINITY),
            // Increasing weights, and a NaN total (no guide).
            (1000, -1.5),
            (1000, f64::NAN),
        ];
        for (n, s) in cases {
            let z = ZipfCdf::new(n, s);
            let mut rs = vec![0.0, 1.0 - f64::EPSILON / 2.0];
            for b in 1..z.buckets as u32 {
                let edge = f64::from(b) / z.buckets;
                rs.extend([edge.next_down(), edge, edge.next_up()]);
            }
            rs.extend((0..20_000).map(|_| mt.random()));
            for r in rs {
                assert_eq!(
                    z.bisect_right(r),
                    python_bisect_right(&z.cum, r * z.total),
                    "n={n} s={s} r={r:?}"
                );
            }
        }
    }

    #[test]
    fn formats_extreme_values() {
        let params = OrdersParams {
            start_ts: i64::MIN + 200_000,
            ..OrdersParams::default()
        };
        let mut g = OrdersGenerator::new(&params);
        g.generated = u64::MAX - 1;
        let mut out = Vec::new();
        let ts = g.next_into(&mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(ts < -9_000_000_000_000_000_000, "{ts}");
        assert!(
            line.starts_with(r#"{"order_id":"o-18446744073709551615","customer_id":"c-"#),
            "{line}"
        );
        assert!(line.ends_with(&format!(r#","event_ts":{ts}}}"#)), "{line}");
    }

    /// Splits a line into everything before the event_ts value and the value.
    fn split_ts(line: &[u8]) -> (&[u8], i64) {
        let key = b"\"event_ts\":";
        let at = line
            .windows(key.len())
            .position(|w| w == key)
            .expect("line has event_ts")
            + key.len();
        let digits = std::str::from_utf8(&line[at..line.len() - 1]).unwrap();
        (&line[..at], digits.parse().unwrap())
    }

    #[test]
    fn next_into_returns_the_written_event_ts() {
        let mut g = OrdersGenerator::new(&OrdersParams::default());
        for _ in 0..1000 {
            let mut out = Vec::new();
            let ts = g.next_into(&mut out);
            assert_eq!(out.last(), Some(&b'}'));
            assert_eq!(split_ts(&out).1, ts);
        }
    }

    #[test]
    fn clock_step_scales_only_the_clock_advance() {
        let n = 20_000;
        let base = OrdersParams::default();
        let fast = OrdersParams {
            clock_step_ms: 1000,
            ..base.clone()
        };
        let slow_out = generate(&base, n);
        let fast_out = generate(&fast, n);
        let mut prev_steps = 0i64;
        let mut n_late = 0;
        for (slow_line, fast_line) in slow_out
            .split(|&b| b == b'\n')
            .zip(fast_out.split(|&b| b == b'\n'))
            .filter(|(s, _)| !s.is_empty())
        {
            let (slow_rest, slow_ts) = split_ts(slow_line);
            let (fast_rest, fast_ts) = split_ts(fast_line);
            // Same draws, so same ids, customers, amounts, currencies, statuses.
            assert_eq!(slow_rest, fast_rest);
            // ts = start + steps * step_ms - offset, with the same steps and
            // offset in both runs, so the difference is steps * 999.
            let diff = fast_ts - slow_ts;
            assert_eq!(diff % 999, 0, "{}", String::from_utf8_lossy(fast_line));
            let steps = diff / 999;
            assert!(
                (0..=2).contains(&(steps - prev_steps)),
                "clock advanced {} steps in one event",
                steps - prev_steps
            );
            prev_steps = steps;
            // The offset (jitter or lateness) is unscaled milliseconds.
            let offset = base.start_ts + steps - slow_ts;
            assert_eq!(offset, fast.start_ts + steps * 1000 - fast_ts);
            if offset > JITTER_MAX_MS {
                assert!((LATE_MIN_MS..=LATE_MAX_MS).contains(&offset), "{offset}");
                n_late += 1;
            } else {
                assert!(offset >= 0, "{offset}");
            }
        }
        // Mean advance is one step per event.
        assert!(
            (n as i64 * 9 / 10..=n as i64 * 11 / 10).contains(&prev_steps),
            "{prev_steps} steps over {n} events"
        );
        assert!(n_late > 0 && n_late < n / 100, "{n_late} very late events");
    }
}
