//! The suppression list at scale: build a list of N addresses (default 10 million), then, in a
//! fresh process, measure how long the ledger takes to open, lookups at p50/p99/max (half of
//! them for addresses on the list, half not), and the process's resident memory.
//!
//! `cargo bench --bench suppression [-- N]`. The database is kept in
//! `target/bench-suppression/` and reused while it holds N entries. With root, the OS page cache
//! is dropped before the measurement, so start-up and the first lookups read from disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use poolrelay::ledger::Ledger;
use poolrelay::ledger::suppression::Suppressed;
use poolrelay::settings::suppression::{SuppressedReasons, SuppressionReason};

const BATCH: u64 = 100_000;
const LOOKUPS: u64 = 1_000_000;

fn address(i: u64) -> String {
    format!("user{i:09}@domain{}.example", i % 1000)
}

fn build(path: &Path, count: u64) {
    let _ = std::fs::remove_file(path);
    let ledger = Ledger::open(path).expect("ledger");
    let began = Instant::now();
    let mut next = 0;
    while next < count {
        let end = (next + BATCH).min(count);
        let entries: Vec<Suppressed> = (next..end)
            .map(|i| Suppressed {
                address: address(i),
                reason: if i % 10 == 0 {
                    SuppressionReason::Complaint
                } else {
                    SuppressionReason::Bounce
                },
                last_update: 1_764_000_000 + i,
                message_id: (i % 3 == 0).then(|| format!("{:016x}-{:06x}", i, i % 4096)),
                feedback_id: None,
            })
            .collect();
        ledger.suppress_all(&entries).expect("batch");
        next = end;
        if next % 1_000_000 == 0 || next == count {
            eprintln!(
                "  built {next} of {count} ({:.0} s)",
                began.elapsed().as_secs_f64()
            );
        }
    }
    let seconds = began.elapsed().as_secs_f64();
    println!(
        "build: {count} entries in {seconds:.1} s ({:.0} entries/s, batches of {BATCH})",
        count as f64 / seconds
    );
}

fn resident_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn drop_page_cache() -> bool {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn measure(path: &Path, count: u64) {
    let cold = drop_page_cache();
    let began = Instant::now();
    let ledger = Ledger::open(path).expect("ledger");
    let open = began.elapsed();
    assert_eq!(
        ledger.suppressed_count(),
        count,
        "the list holds every entry"
    );
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!(
        "page cache: {}",
        if cold {
            "dropped first (cold start)"
        } else {
            "not dropped (needs root; warm)"
        }
    );
    println!(
        "database: {:.0} MB on disk for {count} entries",
        size as f64 / 1e6
    );
    println!("start-up (open + count): {:.3} s", open.as_secs_f64());
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for pass in ["first pass (after start-up)", "second pass (warm)"] {
        lookups(&ledger, count, &mut seed, pass);
    }
    let (rss, peak) = resident_kib();
    println!(
        "resident memory: {:.0} MB now, {:.0} MB peak",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}

/// `LOOKUPS` random lookups, half hits (an address on the list) and half misses (one past it).
fn lookups(ledger: &Ledger, count: u64, state: &mut u64, pass: &str) {
    let reasons = SuppressedReasons::default();
    let mut times = Vec::with_capacity(LOOKUPS as usize);
    let mut found = 0u64;
    for n in 0..LOOKUPS {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let i = if n % 2 == 0 {
            *state % count
        } else {
            count + *state % count
        };
        let wanted = address(i);
        let started = Instant::now();
        let hit = ledger.stops(&wanted, reasons).expect("lookup").is_some();
        times.push(started.elapsed());
        found += u64::from(hit);
    }
    assert_eq!(found, LOOKUPS / 2);
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "lookups, {pass} ({LOOKUPS}, half hits): p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.0} us",
        micros(at(0.5)),
        micros(at(0.99)),
        micros(at(0.999)),
        micros(at(1.0))
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let [mode, path, count] = &args[..]
        && mode == "build-into"
    {
        build(Path::new(path), count.parse().expect("a count"));
        return;
    }
    let count: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-suppression");
    std::fs::create_dir_all(&dir).expect("bench folder");
    let path = dir.join(format!("ledger-{count}.redb"));
    let reusable =
        path.exists() && Ledger::open(&path).map(|l| l.suppressed_count()).ok() == Some(count);
    if !reusable {
        // Built in a child process, so this one's memory is that of a relay that only opened it.
        let status = std::process::Command::new(std::env::current_exe().expect("this binary"))
            .args([
                "build-into",
                path.to_str().expect("utf-8 path"),
                &count.to_string(),
            ])
            .status()
            .expect("the build runs");
        assert!(status.success());
    } else {
        println!("build: reusing {}", path.display());
    }
    measure(&path, count);
}
