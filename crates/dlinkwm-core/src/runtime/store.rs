//! The data of every store (its WASI context, limiter, per-call scratch space and the plugin's
//! shared context), how a store is made, and how each call arms it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use wasmtime::{Memory, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::config::{ResolvedSettings, Stdio};
use crate::error::Result;
use crate::runtime::deadline::{Deadline, Ticks, deadline_ticks};
use crate::runtime::host_methods::HostCallHandler;
use crate::runtime::limits::Limiter;
use crate::runtime::stdio::{LogBudget, LogStream};
use crate::runtime::wasi::build_wasi;

/// What every store of one plugin shares: its name, the host methods it may call and its
/// current settings (replaced when the configuration changes).
pub(crate) struct PluginContext {
    pub(crate) name: Arc<str>,
    pub(crate) host: Arc<dyn HostCallHandler>,
    pub(crate) settings: ArcSwap<ResolvedSettings>,
    /// Bumped after each replacement of `settings`, so instances notice it with one load.
    pub(crate) settings_generation: AtomicU64,
    /// For a plugin loaded for async calls: the tokio runtime it was loaded on (what drives its
    /// instances when a reload runs outside that runtime), and how often a long call yields.
    pub(crate) asynchronous: Option<Asynchronous>,
}

/// How an async plugin's instances run.
#[derive(Clone, Debug)]
pub(crate) struct Asynchronous {
    /// The runtime the plugin was loaded on.
    pub(crate) runtime: tokio::runtime::Handle,
    /// Epoch ticks a guest runs before it yields to the executor.
    pub(crate) yield_ticks: u64,
}

impl PluginContext {
    /// Replaces the settings; every instance picks them up at its next call.
    pub(crate) fn set_settings(&self, settings: ResolvedSettings) {
        self.settings.store(Arc::new(settings));
        self.settings_generation.fetch_add(1, Ordering::Release);
    }
}

/// Per-call scratch space, reset at the start of each call and reused, so a call allocates
/// nothing once its buffers have grown.
#[derive(Default)]
pub(crate) struct CallState {
    pub(crate) output: Vec<u8>,
    pub(crate) error: Option<String>,
    pub(crate) output_overflow: Option<usize>,
    pub(crate) host_result: Vec<u8>,
    pub(crate) max_output_bytes: usize,
    /// Host calls refused by the allowlist in this call: the first is logged, the rest counted.
    pub(crate) host_calls_denied: u32,
    /// When the current call must end, for host functions that wait.
    pub(crate) deadline: Deadline,
}

/// The data of every store.
pub struct StoreState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: Limiter,
    pub(crate) memory: Option<Memory>,
    pub(crate) call: CallState,
    pub(crate) context: Arc<PluginContext>,
    /// The plugin's settings as of this instance's current call (what host calls check).
    pub(crate) settings: Arc<ResolvedSettings>,
    /// `settings.timeout` in epoch ticks, worked out once per settings change.
    deadline_ticks: u64,
    pub(crate) version: u64,
    pub(crate) stdio: Stdio,
    pub(crate) stdout: Option<LogStream>,
    /// The log text the current call may still write (shared with the WASI log streams).
    pub(crate) log_budget: Arc<LogBudget>,
    /// The engine's epoch count, which the current call's deadline is measured in.
    pub(crate) ticks: Ticks,
    /// For an async plugin's instance, the epoch ticks it runs before yielding (0: a sync one,
    /// whose calls trap at their deadline).
    pub(crate) yield_ticks: u64,
    /// An Extism plugin's kernel (its heap, input, output, error and vars).
    pub(crate) extism: Option<Box<crate::runtime::extism_kernel::Kernel>>,
    /// The instance must not serve another call (an Extism plugin's `_start` ran: like a
    /// command, it starts afresh, as Extism does).
    pub(crate) spent: bool,
}

impl StoreState {
    /// Takes `settings` for the calls to come: the limits each call arms are worked out here,
    /// once per settings change, not on every call.
    pub(crate) fn adopt(&mut self, settings: Arc<ResolvedSettings>) {
        self.deadline_ticks = deadline_ticks(settings.timeout);
        self.call.max_output_bytes = settings.max_output_bytes;
        self.limiter.max_memory_bytes = settings.max_memory_bytes;
        self.limiter.max_table_elements = settings.max_table_elements;
        self.settings = settings;
    }
}

/// A new store for one instance: WASI with the settings' grants, the limits, the epoch deadline.
pub(crate) fn new_store(
    wasmtime: &wasmtime::Engine,
    ticks: &Ticks,
    context: &Arc<PluginContext>,
    version: u64,
    settings: &ResolvedSettings,
) -> Result<Store<StoreState>> {
    let log_budget = LogBudget::new();
    let (wasi, stdout) = build_wasi(&context.name, settings, &log_budget)?;
    let adopted = context.settings.load_full();
    let mut state = StoreState {
        wasi,
        limiter: Limiter::new(settings.max_memory_bytes, settings.max_table_elements),
        memory: None,
        call: CallState::default(),
        context: context.clone(),
        settings: adopted.clone(),
        deadline_ticks: 0,
        version,
        stdio: settings.stdio,
        stdout,
        log_budget,
        ticks: ticks.clone(),
        yield_ticks: context
            .asynchronous
            .as_ref()
            .map_or(0, |asynchronous| asynchronous.yield_ticks.max(1)),
        extism: None,
        spent: false,
    };
    state.adopt(adopted);
    let mut store = Store::new(wasmtime, state);
    store.limiter(|state| &mut state.limiter);
    if store.data().yield_ticks == 0 {
        store.epoch_deadline_trap();
    } else {
        // An async call yields to the executor every `yield_ticks` and ends at its deadline.
        store.epoch_deadline_callback(|store| {
            let state = store.data();
            let now = state.ticks.load(Ordering::Relaxed);
            match state.call.deadline.tick.checked_sub(now) {
                Some(left) if left > 0 => Ok(UpdateDeadline::Yield(left.min(state.yield_ticks))),
                _ => Ok(UpdateDeadline::Interrupt),
            }
        });
    }
    Ok(store)
}

/// Resets the per-call state and arms the time and fuel limits of the store's adopted settings.
/// No allocation, no syscall.
#[inline]
pub(crate) fn prepare(store: &mut Store<StoreState>) {
    let (ticks, fuel) = (store.data().deadline_ticks, store.data().settings.fuel);
    let yield_ticks = store.data().yield_ticks;
    // A sync call traps at its deadline; an async one first wakes at its next yield.
    store.set_epoch_deadline(if yield_ticks == 0 {
        ticks
    } else {
        ticks.min(yield_ticks)
    });
    if let Some(fuel) = fuel {
        // Only fails when the engine does not meter fuel, which `Plugin::load` checks first.
        let _ = store.set_fuel(fuel);
    }
    let state = store.data_mut();
    state.call.output.clear();
    state.call.error = None;
    state.call.output_overflow = None;
    state.limiter.memory_refused = None;
    state.call.host_calls_denied = 0;
    state.call.deadline.tick = state.ticks.load(Ordering::Relaxed).saturating_add(ticks);
    state.log_budget.reset();
}
