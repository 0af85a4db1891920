//! The mining thread: seal filler blocks on the tip, a few nonces at a time, so a new tip or a
//! shutdown interrupts it within milliseconds; on a provider node, leased shards whose inputs
//! are ready come first, each computed by one mining pass on its own matrices.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::time::{Duration, Instant};

use ergon_chain::{mine_once, seal, CheckedBlock, Template};
use ergon_types::Hash;

use crate::provider::{Computed, ReadyWork};
use crate::{now_ms, Shared};
use ergon_jobdata::Output;

/// Nonces tried before checking whether the tip moved.
const NONCES_PER_ROUND: u64 = 8;

/// A template is rebuilt when the tip moves, or this often to pick up new transactions and time.
const TEMPLATE_REFRESH: Duration = Duration::from_secs(1);

/// The multiply-adds of mining run on a rayon pool of their own whose threads have the lowest
/// CPU priority: mining takes every idle cycle, but the API, block import and the network come
/// first (on two cores, a miner at equal priority is what made API latency climb under load,
/// issue 10). The thread that takes the node's lock to build templates and import blocks stays
/// at normal priority, so a starved low-priority thread never holds the lock others wait on.
///
/// Each pool thread also registers its CPU-time clock when it starts, so the miner can read how
/// much CPU the pool used (a job's energy) from its own thread, without waking the pool.
struct Background {
    pool: Option<rayon::ThreadPool>,
    clocks: std::sync::Arc<std::sync::Mutex<Vec<CpuClock>>>,
}

impl Background {
    fn new() -> Self {
        let clocks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let register = clocks.clone();
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("ergon-miner-{i}"))
            .start_handler(move |_| {
                lower_this_threads_priority();
                if let Some(clock) = CpuClock::of_this_thread() {
                    register.lock().unwrap_or_else(|p| p.into_inner()).push(clock);
                }
            })
            .build();
        match pool {
            Ok(pool) => {
                // The start handlers run as the threads start: wait (briefly) for all of them,
                // so the first measurement already counts every thread.
                let threads = pool.current_num_threads();
                let deadline = Instant::now() + Duration::from_secs(2);
                while clocks.lock().unwrap_or_else(|p| p.into_inner()).len() < threads && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Background { pool: Some(pool), clocks }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no mining pool of its own: mining at normal priority");
                Background { pool: None, clocks }
            }
        }
    }

    /// Runs `f` (and every rayon task it spawns) on the low-priority pool.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// Runs `f` on the pool and also says how much CPU time the pool's threads spent meanwhile:
    /// the sum of every thread's CPU clock before and after. Only mining
    /// runs on this pool and the miner runs one thing at a time, so that is `f`'s CPU time,
    /// whatever else the process does (the API, the network, a validator's checks).
    fn run_timed<R: Send>(&self, f: impl FnOnce() -> R + Send) -> (R, Duration) {
        let before = self.cpu_time();
        let out = self.run(f);
        (out, self.cpu_time().saturating_sub(before))
    }

    /// Σ CPU time of the pool's threads so far (the calling thread's, without a pool).
    fn cpu_time(&self) -> Duration {
        match &self.pool {
            Some(_) => self.clocks.lock().unwrap_or_else(|p| p.into_inner()).iter().map(CpuClock::read).sum(),
            None => thread_cpu_time(),
        }
    }
}

/// A thread's CPU-time clock (`pthread_getcpuclockid`), readable from any thread of the process.
#[derive(Clone, Copy)]
struct CpuClock(#[cfg(unix)] libc::clockid_t);

impl CpuClock {
    fn of_this_thread() -> Option<CpuClock> {
        #[cfg(unix)]
        {
            let mut id: libc::clockid_t = 0;
            // SAFETY: `id` is a valid place for the clock id; pthread_self is always valid.
            if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) } == 0 {
                return Some(CpuClock(id));
            }
        }
        None
    }

    /// The thread's CPU time; zero if it cannot be read (for instance once the thread is gone).
    fn read(&self) -> Duration {
        #[cfg(unix)]
        {
            let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `t` is a valid, writable timespec for the duration of the call.
            if unsafe { libc::clock_gettime(self.0, &mut t) } == 0 {
                return Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32);
            }
        }
        Duration::ZERO
    }
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`); zero where it cannot be
/// read, which the energy figures then show as not measured.
fn thread_cpu_time() -> Duration {
    #[cfg(unix)]
    return CpuClock(libc::CLOCK_THREAD_CPUTIME_ID).read();
    #[cfg(not(unix))]
    Duration::ZERO
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// Nice 19 for the calling thread (on Linux, `setpriority(PRIO_PROCESS, 0, …)` sets the calling
/// thread's nice value, not the whole process's). Best effort: a failure leaves it as it was.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority takes no pointers; any return value is acceptable (best effort).
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

pub fn mine_forever(shared: Arc<Shared>) {
    let background = Background::new();
    let mut nonce = 0u64;
    let mut current: Option<(Hash, Instant, Template)> = None;
    // Below a full filler duty, the miner rests after each filler pass until then; leased work
    // ends the rest at once.
    let mut rest_until: Option<Instant> = None;
    let duty = shared.filler_duty_percent.clamp(1, 100) as u32;
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.storage_error().is_some() {
            // A block could not be kept: mining waits until the disk takes writes again.
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        if shared.poai.answering() {
            // A challenge is being answered: it is timed, and a miner on the same cores (even at
            // the lowest priority, on a sibling hyperthread) makes an honest machine look slower.
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let ready = shared.ready.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        if let Some(work) = ready {
            compute_leased(&shared, &background, work);
            continue;
        }
        if rest_until.is_some_and(|t| Instant::now() < t) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let template = {
            let mut node = shared.lock();
            let tip = node.chain.tip();
            let stale = current.as_ref().is_none_or(|(t, at, _)| *t != tip || at.elapsed() >= TEMPLATE_REFRESH);
            if stale {
                let pending = node.mempool.best(ergon_types::block::MAX_TXS);
                current = Some((tip, Instant::now(), node.chain.template_verified(shared.miner, pending, now_ms())));
            }
            current.as_ref().map(|c| c.2.clone()).expect("set above")
        };
        let (parent, work) = (template.header.parent, template.header.work);
        let macs = work.m as u64 * work.k as u64 * work.n as u64;
        let pass = Instant::now();
        let (sealed, cpu) = background.run_timed(|| seal(template, nonce, NONCES_PER_ROUND));
        shared.stats.cpu_ms_on_filler.fetch_add(millis(cpu), Ordering::Relaxed);
        if duty < 100 {
            rest_until = Some(Instant::now() + pass.elapsed() * (100 - duty) / duty);
        }
        nonce = nonce.wrapping_add(NONCES_PER_ROUND);
        shared.stats.macs_mined.fetch_add(macs * NONCES_PER_ROUND, Ordering::Relaxed);
        let block = match sealed {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, "mining failed");
                return;
            }
        };
        if !accept_own(&shared, block, parent) {
            return;
        }
    }
}

/// A leased shard: one mining pass on its matrices computes the client's product exactly, and
/// may win a block. The product goes to the provider agent either way.
fn compute_leased(shared: &Arc<Shared>, background: &Background, ready: ReadyWork) {
    let ReadyWork { key, work, ml } = ready;
    // An ML job continues from its first product, so it keeps the operands to hand over.
    let ml = ml.map(|job| (job, work.a.clone(), work.b.clone()));
    let template = {
        let mut node = shared.lock();
        let pending = node.mempool.best(ergon_types::block::MAX_TXS);
        node.chain.template_on_job_verified(shared.miner, pending, now_ms(), work)
    };
    let template = match template {
        Ok(t) => t,
        Err(reason) => {
            tracing::warn!(job = %key.0.to_hex(), shard = key.1, %reason, "cannot mine on this lease any more");
            return;
        }
    };
    let (parent, w) = (template.header.parent, template.header.work);
    let macs = w.m as u64 * w.k as u64 * w.n as u64;
    let difficulty = template.header.difficulty;
    let (mined, mut cpu) = background.run_timed(|| mine_once(&template, 0));
    let (block, product) = match mined {
        Ok(mined) => mined,
        Err(e) => return tracing::error!(error = %e, "mining a leased shard failed"),
    };
    if let Some(block) = block {
        tracing::info!(job = %key.0.to_hex(), shard = key.1, "a block was won on a leased job");
        accept_own(shared, block, parent);
    }
    let (output, macs) = match ml {
        Some((job, a, b)) => {
            let (done, more) = background.run_timed(|| run_ml(&key, job, a, b, product, difficulty));
            cpu += more;
            match done {
                Ok(done) => done,
                Err(why) => {
                    return tracing::warn!(job = %key.0.to_hex(), %why, "the ML job failed; the lease will close")
                }
            }
        }
        None => (Output::Product(product), macs),
    };
    shared.stats.macs_mined.fetch_add(macs, Ordering::Relaxed);
    shared.stats.macs_mined_on_jobs.fetch_add(macs, Ordering::Relaxed);
    shared.stats.cpu_ms_on_jobs.fetch_add(millis(cpu), Ordering::Relaxed);
    // At least 1 ms when anything was measured: a shard that took under a millisecond still
    // used the CPU, and 0 is what "not measured" reads as.
    let cpu_ms = if cpu.is_zero() { 0 } else { millis(cpu).clamp(1, u32::MAX as u64) as u32 };
    shared.computed.lock().unwrap_or_else(|p| p.into_inner()).push(Computed { key, output, macs, cpu_ms });
}

/// The rest of an ML job after its committed first product (mined on the chain's template):
/// every later product also goes through PoUW mining, on challenges named after the job. Their
/// tickets cannot become blocks (no one could commit to those products in advance), but the
/// work is the same mining pass, and the bytes are those of any other provider.
fn run_ml(
    key: &ergon_market::TaskKey,
    job: ergon_ml::MlJob,
    a: ergon_kernels::MatI8,
    b: ergon_kernels::MatI8,
    first: ergon_kernels::MatI32,
    difficulty: u64,
) -> Result<(Output, u64), String> {
    let header = [b"ergon v1 ml job".as_slice(), &key.0 .0].concat();
    let mut mul = ergon_ml::FirstGiven::new(a, b, first, ergon_ml::Mining::new(header, difficulty.max(1)));
    let started = Instant::now();
    let bytes = job.run(&mut mul).map_err(|e| e.to_string())?;
    let macs = ergon_ml::Multiply::macs(&mul);
    tracing::info!(
        job = %key.0.to_hex(),
        macs,
        products = mul.then.products + 1,
        secs = started.elapsed().as_secs_f64(),
        "ML job computed, every product through mining"
    );
    Ok((Output::Bytes(bytes), macs))
}

/// Imports and publishes a block this node mined; false if the store failed (stop mining).
fn accept_own(shared: &Arc<Shared>, block: ergon_types::Block, parent: Hash) -> bool {
    // The proof and signature checks without the node's lock (a full block takes a while).
    let block = match CheckedBlock::check(block) {
        Ok(b) => b,
        Err(reason) => {
            tracing::error!(%reason, "own block fails its own checks (bug)");
            return true;
        }
    };
    {
        let mut node = shared.lock();
        if node.chain.tip() != parent {
            return true; // someone else extended the chain meanwhile
        }
        let (height, id) = (block.block().header.height, block.block().header.id());
        let bytes = ergon_types::Canonical::encode(block.block());
        let node = &mut *node;
        match node.store.import_checked(&mut node.chain, block, now_ms()) {
            Ok(Ok(_)) => {
                shared.stats.blocks_mined.fetch_add(1, Ordering::Relaxed);
                node.seen_ms.insert(id, now_ms());
                node.mempool.refresh(&node.chain);
                shared.send(ergon_net::Command::PublishBlock(bytes));
                tracing::info!(height, tip = %node.chain.tip(), "mined a block");
            }
            Ok(Err(reason)) => tracing::error!(height, %reason, "own block refused (bug)"),
            Err(e) => shared.storage_failed(&e.to_string()),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins until the calling thread has used `d` of CPU time (its own clock, so a loaded
    /// machine, where the low-priority pool gets little of the wall time, changes nothing).
    fn spin(d: Duration) {
        let start = thread_cpu_time();
        let mut x = 0u64;
        while thread_cpu_time() - start < d {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }

    /// The energy of a job rests on this: CPU time spent on the pool's threads is counted once,
    /// time spent waiting is not, and work spread over every thread of the pool is all counted.
    #[test]
    fn the_pool_counts_its_threads_cpu_time_once_and_not_their_waiting() {
        let background = Background::new();
        let ((), slept) = background.run_timed(|| std::thread::sleep(Duration::from_millis(200)));
        assert!(slept < Duration::from_millis(30), "sleeping is not CPU time: {slept:?}");
        let ((), busy) = background.run_timed(|| spin(Duration::from_millis(100)));
        assert!(busy >= Duration::from_millis(100) && busy < Duration::from_millis(130), "one busy thread: {busy:?}");
        let threads = background.run(rayon::current_num_threads) as u32;
        let (_, spread) = background.run_timed(|| rayon::broadcast(|_| spin(Duration::from_millis(100))));
        let (low, high) = (Duration::from_millis(100) * threads, Duration::from_millis(130) * threads);
        assert!(spread >= low && spread < high, "{threads} busy threads: {spread:?}");
    }
}
