//! WASI calls that wait, bounded by the call's deadline.
//!
//! Epoch interruption ends a call only while wasm code runs: a guest blocked inside a host call
//! (WASI preview 1 `poll_oneoff` on a clock, a component's `wasi:io/poll`) would sleep past its
//! timeout, holding its instance. DlinkWM shadows those functions: each waits on the guest's
//! subscriptions plus one timer of its own that fires at the call's deadline. When that timer
//! is what ends the wait, the call ends with [`wasmtime::Trap::Interrupt`], which becomes
//! [`crate::Error::Timeout`]. Other timers never fire early, so a guest that gets an answer
//! before its deadline sees exactly what wasmtime-wasi would have answered.
//!
//! The deadline is kept in ticks of the engine's epoch ticker (one atomic load per call, no
//! clock read on the call path), so it is exact to one [`crate::EPOCH_TICK`].
//!
//! Not bounded here (see docs/security.md): reads and opens of FIFOs inside a preopened
//! directory the operator granted, and an inherited stdout or stderr whose reader stops
//! reading.

use std::sync::atomic::Ordering;
use std::time::Duration;

use wasmtime::component::{Linker as ComponentLinker, Resource};
use wasmtime::{AsContextMut as _, Caller, Linker, StoreContextMut};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1 as _};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::sync::io::poll as p2_poll;

use crate::runtime::deadline::EPOCH_TICK;
use crate::runtime::guest::{guest_len, guest_range};
use crate::runtime::store::StoreState;

/// The most subscriptions one `poll_oneoff` may pass: what the host copies is bounded by this,
/// not by the guest's memory.
pub(crate) const MAX_POLL_SUBSCRIPTIONS: usize = 1024;

const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const CLOCK_MONOTONIC: u32 = 1;

/// The time left until the current call's deadline, or `None` once it has passed.
pub(crate) fn time_left(state: &StoreState) -> Option<Duration> {
    let now = state.ticks.load(Ordering::Relaxed);
    let left = state
        .call
        .deadline
        .tick
        .checked_sub(now)
        .filter(|&left| left > 0)?;
    let millis = u64::try_from(EPOCH_TICK.as_millis()).unwrap_or(u64::MAX);
    Some(Duration::from_millis(left.saturating_mul(millis)))
}

pub(crate) fn interrupted() -> wasmtime::Error {
    wasmtime::Trap::Interrupt.into()
}

/// Shadows WASI preview 1's `poll_oneoff` in `linker` with the bounded one.
pub(crate) fn add_p1(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |mut caller: Caller<'_, StoreState>,
         subscriptions: i32,
         events: i32,
         count: i32,
         written: i32|
         -> wasmtime::Result<i32> {
            let fuel = caller.as_context_mut().hostcall_fuel();
            wasmtime_wasi::runtime::in_tokio(poll_oneoff(
                &mut caller,
                fuel,
                subscriptions,
                events,
                count,
                written,
            ))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// [`add_p1`] for plugins called with `call_async`: the wait suspends the guest's fiber.
pub(crate) fn add_p1_async(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |mut caller: Caller<'_, StoreState>,
         (subscriptions, events, count, written): (i32, i32, i32, i32)| {
            Box::new(async move {
                let fuel = caller.as_context_mut().hostcall_fuel();
                poll_oneoff(&mut caller, fuel, subscriptions, events, count, written).await
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

async fn poll_oneoff(
    caller: &mut Caller<'_, StoreState>,
    fuel: usize,
    subscriptions: i32,
    events: i32,
    count: i32,
    written: i32,
) -> wasmtime::Result<i32> {
    let count = guest_len(count);
    if count == 0 || count > MAX_POLL_SUBSCRIPTIONS {
        return Ok(ERRNO_INVAL);
    }
    let Some(memory) = caller.data().memory else {
        return Ok(ERRNO_FAULT);
    };
    let (data, state) = memory.data_and_store_mut(&mut *caller);
    let Some(left) = time_left(state) else {
        return Err(interrupted());
    };
    let Ok(source) = guest_range(
        data.len(),
        subscriptions,
        count * SUBSCRIPTION_SIZE,
        "subscriptions",
    ) else {
        return Ok(ERRNO_FAULT);
    };
    // The guest's subscriptions and the deadline's, then room for their events and the count,
    // in a buffer aligned for wiggle's u64 fields.
    let all = count + 1;
    let events_at = all * SUBSCRIPTION_SIZE;
    let written_at = events_at + all * EVENT_SIZE;
    let mut words = vec![0u64; written_at / 8 + 1];
    let scratch: &mut [u8] = bytes_of(&mut words);
    scratch[..source.len()].copy_from_slice(&data[source]);
    // The deadline's own subscription gets a userdata no guest subscription has, so its event
    // is told apart from every guest event.
    let userdata = unused_userdata(&scratch[..count * SUBSCRIPTION_SIZE]);
    let deadline = &mut scratch[count * SUBSCRIPTION_SIZE..events_at];
    deadline[..8].copy_from_slice(&userdata.to_le_bytes());
    // Tag 0 (clock) at 8; the clock at 16; a relative timeout at 24.
    deadline[16..20].copy_from_slice(&CLOCK_MONOTONIC.to_le_bytes());
    let nanos = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX);
    deadline[24..32].copy_from_slice(&nanos.to_le_bytes());
    state.wasi.set_hostcall_fuel(fuel);
    let errno = {
        let mut scratch_memory = wiggle::GuestMemory::Unshared(&mut *scratch);
        let to_i32 = |at: usize| i32::try_from(at).unwrap_or(i32::MAX);
        p1::poll_oneoff(
            &mut state.wasi,
            &mut scratch_memory,
            0,
            to_i32(events_at),
            to_i32(all),
            to_i32(written_at),
        )
        .await?
    };
    if errno != 0 {
        return Ok(errno);
    }
    let mut fired = [0u8; 4];
    fired.copy_from_slice(&scratch[written_at..written_at + 4]);
    let fired = usize::try_from(u32::from_le_bytes(fired))
        .unwrap_or(usize::MAX)
        .min(all);
    let mut kept = Vec::with_capacity(fired * EVENT_SIZE);
    for event in scratch[events_at..events_at + fired * EVENT_SIZE].chunks_exact(EVENT_SIZE) {
        if userdata_of(event) == userdata {
            return Err(interrupted());
        }
        kept.extend_from_slice(event);
    }
    let Ok(out) = guest_range(data.len(), events, kept.len(), "poll events") else {
        return Ok(ERRNO_FAULT);
    };
    let Ok(out_count) = guest_range(data.len(), written, 4, "poll event count") else {
        return Ok(ERRNO_FAULT);
    };
    data[out].copy_from_slice(&kept);
    let kept_count = u32::try_from(kept.len() / EVENT_SIZE).unwrap_or(u32::MAX);
    data[out_count].copy_from_slice(&kept_count.to_le_bytes());
    Ok(0)
}

/// The userdata of a subscription or an event (both start with it).
fn userdata_of(record: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&record[..8]);
    u64::from_le_bytes(bytes)
}

/// A userdata that none of `subscriptions` has: the largest free one (at most 1,024 are taken,
/// so one of the 1,025 largest values is free).
fn unused_userdata(subscriptions: &[u8]) -> u64 {
    let mut taken: Vec<u64> = subscriptions
        .chunks_exact(SUBSCRIPTION_SIZE)
        .map(userdata_of)
        .collect();
    taken.sort_unstable();
    let mut candidate = u64::MAX;
    while taken.binary_search(&candidate).is_ok() {
        candidate -= 1;
    }
    candidate
}

/// `words` as bytes.
fn bytes_of(words: &mut [u64]) -> &mut [u8] {
    let len = std::mem::size_of_val(words);
    // SAFETY: the pointer and length cover exactly the memory of `words`, which is borrowed
    // mutably for the lifetime of the result; every byte of a u64 is initialized, and u8 has
    // no alignment or validity requirement.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) }
}

/// Shadows `wasi:io/poll`'s `poll` and `pollable.block` in a component linker with bounded ones.
/// Every blocking wait of a component (sleeps, stream readiness) goes through them.
pub(crate) fn add_p2(linker: &mut ComponentLinker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    // The exact version wasmtime-wasi 48 defines: another one would add a second instance
    // instead of replacing these functions (a test of the engine's component linker checks that a
    // component's sleep is bounded).
    let mut poll = linker.instance("wasi:io/poll@0.2.12")?;
    poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, StoreState>,
         (pollables,): (Vec<Resource<DynPollable>>,)| {
            bounded_poll(store.data_mut(), pollables).map(|ready| (ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, StoreState>, (pollable,): (Resource<DynPollable>,)| {
            bounded_poll(store.data_mut(), vec![pollable]).map(|_| ())
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// [`add_p2`] for components called with `call_async`: the wait suspends the guest's fiber.
pub(crate) fn add_p2_async(linker: &mut ComponentLinker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance("wasi:io/poll@0.2.12")?;
    poll.func_wrap_async(
        "poll",
        |mut store: StoreContextMut<'_, StoreState>,
         (pollables,): (Vec<Resource<DynPollable>>,)| {
            Box::new(async move {
                bounded_poll_async(store.data_mut(), pollables)
                    .await
                    .map(|ready| (ready,))
            })
        },
    )?;
    poll.func_wrap_async(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, StoreState>, (pollable,): (Resource<DynPollable>,)| {
            Box::new(async move {
                bounded_poll_async(store.data_mut(), vec![pollable])
                    .await
                    .map(|_| ())
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// [`bounded_poll`], awaiting instead of blocking.
async fn bounded_poll_async(
    state: &mut StoreState,
    mut pollables: Vec<Resource<DynPollable>>,
) -> wasmtime::Result<Vec<u32>> {
    use wasmtime_wasi::WasiView as _;
    use wasmtime_wasi::p2::bindings::io::poll as async_poll;
    use wasmtime_wasi::p2::bindings::sync::clocks::monotonic_clock::Host as _;
    if pollables.is_empty() {
        return async_poll::Host::poll(state.ctx().table, pollables).await;
    }
    let Some(left) = time_left(state) else {
        return Err(interrupted());
    };
    let nanos = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX);
    let timer = wasmtime_wasi::clocks::WasiClocksView::clocks(state).subscribe_duration(nanos)?;
    let deadline_index = u32::try_from(pollables.len()).unwrap_or(u32::MAX);
    pollables.push(Resource::new_borrow(timer.rep()));
    let table = state.ctx().table;
    let ready = async_poll::Host::poll(&mut *table, pollables).await;
    async_poll::HostPollable::drop(table, timer)?;
    let ready = ready?;
    if ready.contains(&deadline_index) {
        return Err(interrupted());
    }
    Ok(ready)
}

fn bounded_poll(
    state: &mut StoreState,
    mut pollables: Vec<Resource<DynPollable>>,
) -> wasmtime::Result<Vec<u32>> {
    use wasmtime_wasi::WasiView as _;
    use wasmtime_wasi::p2::bindings::sync::clocks::monotonic_clock::Host as _;
    if pollables.is_empty() {
        // wasmtime-wasi's own answer (a trap): an empty poll must not become a sleep.
        return p2_poll::Host::poll(state.ctx().table, pollables);
    }
    let Some(left) = time_left(state) else {
        return Err(interrupted());
    };
    let nanos = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX);
    let timer = wasmtime_wasi::clocks::WasiClocksView::clocks(state).subscribe_duration(nanos)?;
    let deadline_index = u32::try_from(pollables.len()).unwrap_or(u32::MAX);
    pollables.push(Resource::new_borrow(timer.rep()));
    let table = state.ctx().table;
    let ready = p2_poll::Host::poll(table, pollables);
    p2_poll::HostPollable::drop(table, timer)?;
    let ready = ready?;
    if ready.contains(&deadline_index) {
        return Err(interrupted());
    }
    Ok(ready)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_deadline_takes_a_userdata_no_guest_subscription_has() {
        let subscriptions = |userdatas: &[u64]| -> Vec<u8> {
            userdatas
                .iter()
                .flat_map(|userdata| {
                    let mut record = [0u8; super::SUBSCRIPTION_SIZE];
                    record[..8].copy_from_slice(&userdata.to_le_bytes());
                    record
                })
                .collect()
        };
        assert_eq!(super::unused_userdata(&subscriptions(&[1, 2])), u64::MAX);
        assert_eq!(
            super::unused_userdata(&subscriptions(&[u64::MAX, u64::MAX - 1, 7])),
            u64::MAX - 2
        );
        let all: Vec<u64> = (0..1024).map(|back| u64::MAX - back).collect();
        assert_eq!(
            super::unused_userdata(&subscriptions(&all)),
            u64::MAX - 1024
        );
    }
}
