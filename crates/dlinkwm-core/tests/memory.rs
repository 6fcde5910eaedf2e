//! Memory stays flat: 10,000 calls and 100 load/unload cycles after a warm-up must not grow the
//! process's resident memory by more than ~10%. Its own test binary, so no other test's
//! allocations are counted.
#![deny(clippy::undocumented_unsafe_blocks)]

use dlinkwm_core::{Engine, Format, Plugin, PluginOptions};
use test_programs_artifacts::SDK_TEST_A;

/// Resident set size in bytes, from /proc/self/statm (Linux), after asking glibc to return the
/// free memory it keeps: what is left is memory in use, not the allocator's retention, which
/// otherwise moves RSS by a step of about 2 MiB at random moments.
fn rss() -> u64 {
    // SAFETY: malloc_trim only releases free heap memory back to the system.
    unsafe { libc::malloc_trim(0) };
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("rss field");
    pages * 4096
}

fn work(engine: &Engine, calls: usize, cycles: usize) -> anyhow::Result<()> {
    let plugin = Plugin::load(engine, SDK_TEST_A, PluginOptions::default())?;
    let input = postcard::to_allocvec(&"x".repeat(256))?;
    for _ in 0..calls {
        let len = plugin.call("echo", Format::Postcard, &input, <[u8]>::len)?;
        anyhow::ensure!(len == input.len());
    }
    for _ in 0..cycles {
        let loaded = Plugin::load(engine, SDK_TEST_A, PluginOptions::default())?;
        loaded.call("noop", Format::Postcard, &[], |_| ())?;
        drop(loaded);
    }
    Ok(())
}

#[test]
fn rss_stays_flat_over_ten_thousand_calls_and_a_hundred_load_cycles() -> anyhow::Result<()> {
    let engine = Engine::new(Default::default())?;
    // Warm-up is the measured workload itself, three times: the allocator and wasmtime's
    // internal caches grow for the first two or three such rounds (about 2.5 MiB) and then level
    // off (about 0.1-0.2 MiB per round). A shorter warm-up measured that settling, not a leak.
    for _ in 0..3 {
        work(&engine, 10_000, 100)?;
    }
    let warm = rss();
    work(&engine, 10_000, 100)?;
    let after = rss();
    let growth = after as f64 / warm as f64 - 1.0;
    println!(
        "rss after warm-up {:.1} MiB, after 10,000 calls and 100 load/unload cycles {:.1} MiB ({:+.1}%)",
        warm as f64 / 1048576.0,
        after as f64 / 1048576.0,
        growth * 100.0
    );
    assert!(growth < 0.10, "resident memory grew {:.1}%", growth * 100.0);
    Ok(())
}
