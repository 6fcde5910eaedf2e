//! Guest stdout, stderr and SDK log lines become `tracing` events (target `dlinkwm::guest`).
//!
//! Its own test binary with a global subscriber: `tracing` caches each callsite's interest when it
//! is first hit, and with a scoped (`with_default`) subscriber that cache races with other tests
//! hitting the same callsite on other threads, which made this test lose the stdout line at
//! random. A global subscriber has no such race.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::sync::{Arc, Mutex};

use dlinkwm_core::{Engine, Format, Plugin, PluginOptions};
use test_programs_artifacts::SDK_TEST_A;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Guest-output events as `"LEVEL message"`.
#[derive(Clone, Default)]
struct GuestLines(Arc<Mutex<Vec<String>>>);

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for GuestLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "dlinkwm::guest" {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {}", event.metadata().level(), message.0));
        }
    }
}

#[test]
fn guest_stdout_stderr_and_log_lines_go_to_tracing() -> anyhow::Result<()> {
    let lines = GuestLines::default();
    tracing_subscriber::registry().with(lines.clone()).init();
    let plugin = Plugin::load(
        &Engine::new(Default::default())?,
        SDK_TEST_A,
        PluginOptions::default(),
    )?;
    let input = postcard::to_allocvec(&2u32)?;
    plugin.call("chatter", Format::Postcard, &input, |_| ())?;
    let lines = lines.0.lock().unwrap().clone();
    assert_eq!(
        lines,
        vec![
            "INFO log line 0",
            "INFO log line 1",
            "INFO stdout line",
            "WARN stderr line"
        ]
    );
    Ok(())
}
