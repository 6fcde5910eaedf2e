//! Logging setup, error reporting and exit codes: the only place that decides what the user sees
//! of a failure.
//!
//! Results go to stdout through `writeln!(..)?`, never `println!`, which panics when the reader
//! has gone away (`dlinkwm call ... | head -c1`): the write error travels up to `main`, which
//! ends the command quietly and successfully ([`is_closed_pipe`]). What goes to stderr (errors,
//! notes, logs, guest output) ignores a closed stderr: there is no one left to tell, and the exit
//! code still says what happened.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use dlinkwm_host::PluginError;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::escape;

/// Exit codes, documented in `dlinkwm --help` and README.md.
pub mod exit {
    /// Bad arguments or input (clap uses 2 for its own usage errors too).
    pub const USAGE: u8 = 2;
    /// The plugin could not be loaded or returned an error.
    pub const PLUGIN: u8 = 1;
    /// The guest trapped or panicked.
    pub const TRAP: u8 = 3;
    /// The guest hit a limit (time, memory, fuel, input or output size).
    pub const LIMIT: u8 = 4;
}

/// An error the CLI itself found in what the user gave it.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The target of guest output (stdout, stderr and SDK log lines) in `dlinkwm-core`.
const GUEST_TARGET: &str = "dlinkwm::guest";

/// Prints guest output as the plain lines the guest wrote, on stderr, so stdout carries only
/// results.
struct GuestLines;

struct MessageOnly(String);

impl Visit for MessageOnly {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for GuestLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != GUEST_TARGET {
            return;
        }
        let mut message = MessageOnly(String::new());
        event.record(&mut message);
        // Like a guest writing to a closed stderr: nothing more to do.
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}",
            escape::guest_text(&message.0)
        );
    }
}

/// Installs the subscriber: DlinkWM's own events at `level` (or `DLINKWM_LOG`), guest output
/// always, both on stderr.
pub fn init_logging(level: &str, verbose: u8, json: bool) {
    let level = match verbose {
        0 => level,
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("DLINKWM_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},{GUEST_TARGET}=off")));
    if json {
        // One JSON object per line (JSON escapes whatever guest text a field holds); guest
        // output is among them, as events of target `dlinkwm::guest`.
        let filter = EnvFilter::try_from_env("DLINKWM_LOG")
            .unwrap_or_else(|_| EnvFilter::new(format!("{level},{GUEST_TARGET}=info")));
        let lines = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .log_internal_errors(false)
            .with_filter(filter);
        tracing_subscriber::registry().with(lines).init();
        return;
    }
    // DlinkWM's own events carry guest text too (names, messages): every field is escaped,
    // while the layer's own colours stay.
    let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        match field.name() {
            "message" => write!(writer, "{}", escape::guest_text(&text)),
            name => write!(writer, "{name}={}", escape::guest_text(&text)),
        }
    })
    .delimited(" ");
    let own = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Never an `eprintln!` about a failed write: it would panic on a closed stderr.
        .log_internal_errors(false)
        .fmt_fields(fields)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .with_filter(filter);
    let guest = GuestLines.with_filter(
        tracing_subscriber::filter::Targets::new().with_target(GUEST_TARGET, tracing::Level::INFO),
    );
    tracing_subscriber::registry().with(own).with(guest).init();
}

fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<UsageError>().is_some() {
        return exit::USAGE;
    }
    match plugin_error(error.as_ref()) {
        // A limit first: output over its limit is also a guest fault.
        Some(error) if error.is_limit() => exit::LIMIT,
        Some(error) if error.is_guest_fault() => exit::TRAP,
        _ => exit::PLUGIN,
    }
}

/// The engine's error behind `error`, whether it came through a typed call or not.
fn plugin_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a PluginError> {
    error
        .downcast_ref::<dlinkwm_host::Error>()
        .and_then(dlinkwm_host::Error::as_plugin_error)
        .or_else(|| error.downcast_ref::<PluginError>())
}

/// Whether `error` is a write to a closed pipe: the reader of stdout has gone away
/// (`dlinkwm call ... | head -c1`), so the command ends quietly with success, as a Unix tool
/// killed by `SIGPIPE` would (Rust ignores the signal, so it arrives as this error; ripgrep
/// handles it the same way).
pub fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|error| error.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// What the terminal shows of one error (without its causes): guest text escaped. A module
/// that does not compile keeps the compiler's lines (the WAT parser points at the column under
/// the line it quotes).
pub fn message(error: &(dyn std::error::Error + 'static)) -> String {
    let text = error.to_string();
    match plugin_error(error) {
        Some(PluginError::InvalidModule { .. }) => escape::keeping_lines(&text).into_owned(),
        _ => escape::guest_text(&text).into_owned(),
    }
}

/// Writes one line about the command's progress to stderr; a closed stderr is ignored.
pub fn note(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Prints `error: ...` and one `caused by: ...` line per cause, and picks the exit code.
pub fn report(error: &anyhow::Error) -> ExitCode {
    let mut stderr = std::io::stderr().lock();
    for (index, cause) in error.chain().enumerate() {
        let label = if index == 0 { "error" } else { "caused by" };
        // A closed stderr leaves no one to tell; the exit code still says what happened.
        let _ = writeln!(stderr, "{label}: {}", message(cause));
    }
    ExitCode::from(exit_code(error))
}

/// A spinner on stderr while something slow runs (a compile), shown only on a terminal and only
/// once the work has taken longer than a moment. Stops and clears its line when dropped.
pub struct Spinner {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    /// Starts a spinner labelled `what`, if stderr is a terminal.
    pub fn start(what: String) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                stop: None,
                thread: None,
            };
        }
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::spawn(move || {
            // Quick work shows nothing.
            if stopped
                .recv_timeout(std::time::Duration::from_millis(300))
                .is_ok()
            {
                return;
            }
            let frames = ['|', '/', '-', '\\'];
            for frame in frames.iter().cycle() {
                let _ = write!(std::io::stderr().lock(), "\r{frame} {what}");
                if stopped
                    .recv_timeout(std::time::Duration::from_millis(100))
                    .is_ok()
                {
                    break;
                }
            }
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
