//! Many threads on one plugin: separate instances from a bounded pool, in parallel.

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use dlinkwm_core::{
    CallerInfo, Error, Format, HostCallError, HostCallHandler, Plugin, ResolvedSettings,
};
use test_programs_artifacts::SDK_TEST_A;

use crate::{call_postcard, engine, options, options_with_host};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn plugin_handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Plugin>();
    assert_send_sync::<dlinkwm_core::Engine>();
}

/// `meet` returns only once `parties` calls are inside it at the same time.
struct Rendezvous {
    parties: usize,
    arrived: Mutex<usize>,
    all_here: Condvar,
}

impl HostCallHandler for Rendezvous {
    fn call(
        &self,
        _: CallerInfo<'_>,
        method: &str,
        _: Format,
        _: &[u8],
        output: &mut Vec<u8>,
    ) -> Result<(), HostCallError> {
        if method != "meet" {
            return Err(HostCallError::UnknownMethod(method.to_owned()));
        }
        let mut arrived = self.arrived.lock().unwrap();
        *arrived += 1;
        self.all_here.notify_all();
        let (arrived, timeout) = self
            .all_here
            .wait_timeout_while(arrived, WAIT, |arrived| *arrived < self.parties)
            .unwrap();
        drop(arrived);
        if timeout.timed_out() {
            return Err(HostCallError::Failed(
                "the other calls never arrived: calls are not parallel".into(),
            ));
        }
        output.extend_from_slice(&postcard::to_allocvec(&()).unwrap());
        Ok(())
    }
}

#[test]
fn concurrent_calls_run_in_parallel_on_separate_instances() -> anyhow::Result<()> {
    let rendezvous = Rendezvous {
        parties: 3,
        arrived: Mutex::new(0),
        all_here: Condvar::new(),
    };
    let plugin = Plugin::load(
        &engine(),
        SDK_TEST_A,
        options_with_host(ResolvedSettings::default(), rendezvous),
    )?;
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let plugin = plugin.clone();
            std::thread::spawn(move || call_postcard(&plugin, "variant_after_host", &"meet"))
        })
        .collect();
    for thread in threads {
        let answer: String = postcard::from_bytes(&thread.join().expect("no panic")?)?;
        assert_eq!(answer, "a");
    }
    assert_eq!(plugin.live_instances(), 3);
    Ok(())
}

#[test]
fn many_threads_times_many_calls_all_answer_correctly_within_the_pool_bound() -> anyhow::Result<()>
{
    let settings = ResolvedSettings {
        max_instances: 2,
        ..Default::default()
    };
    let plugin = Plugin::load(&engine(), SDK_TEST_A, crate::options(settings))?;
    let threads: Vec<_> = (0..6)
        .map(|thread| {
            let plugin = plugin.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                for call in 0..300 {
                    let text = format!("thread {thread} call {call}");
                    let echoed: String =
                        postcard::from_bytes(&call_postcard(&plugin, "echo", &text)?)?;
                    anyhow::ensure!(echoed == text, "{echoed} != {text}");
                    let sum: i64 =
                        postcard::from_bytes(&call_postcard(&plugin, "add", &(thread, call))?)?;
                    anyhow::ensure!(sum == i64::from(thread) + call, "bad sum");
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no panic")?;
    }
    assert!(plugin.live_instances() <= 2, "the pool bound was exceeded");
    Ok(())
}

/// A host method that calls back into the plugin that called it.
struct CallsBack(OnceLock<Plugin>);

impl HostCallHandler for CallsBack {
    fn call(
        &self,
        _: CallerInfo<'_>,
        _: &str,
        _: Format,
        _: &[u8],
        _: &mut Vec<u8>,
    ) -> Result<(), HostCallError> {
        let plugin = self.0.get().expect("set after loading");
        match plugin.call_raw("noop", &[]) {
            Err(error @ Error::Reentrant { .. }) => Err(HostCallError::Failed(error.to_string())),
            other => Err(HostCallError::Failed(format!(
                "expected a re-entrancy error, got {other:?}"
            ))),
        }
    }
}

#[test]
fn a_host_method_calling_back_into_its_plugin_gets_an_error_not_a_deadlock() -> anyhow::Result<()> {
    let calls_back = Arc::new(CallsBack(OnceLock::new()));
    let settings = ResolvedSettings {
        max_instances: 1,
        ..Default::default()
    };
    let plugin = Plugin::load(
        &engine(),
        SDK_TEST_A,
        options_with_host(settings, calls_back.clone()),
    )?;
    assert!(calls_back.0.set(plugin.clone()).is_ok(), "set once");
    #[derive(serde::Serialize)]
    struct HostCall<'a> {
        method: &'a str,
        arg: &'a str,
    }
    let report: String = postcard::from_bytes(&call_postcard(
        &plugin,
        "call_host_report",
        &HostCall {
            method: "back",
            arg: "",
        },
    )?)?;
    assert!(report.starts_with("HostMethod: plugin `"), "{report}");
    assert!(report.contains("was called re-entrantly"), "{report}");
    // Outside the host call the plugin is callable again.
    assert_eq!(
        postcard::from_bytes::<String>(&call_postcard(&plugin, "echo", &"ok")?)?,
        "ok"
    );
    Ok(())
}

#[test]
fn a_plugin_called_again_while_its_output_is_read_gets_an_error_not_a_deadlock()
-> anyhow::Result<()> {
    // One instance: a call from inside `read` would otherwise wait for the instance this very
    // thread holds.
    let settings = ResolvedSettings {
        max_instances: 1,
        ..Default::default()
    };
    let plugin = Plugin::load(&engine(), SDK_TEST_A, options(settings))?;
    let input = postcard::to_allocvec("outer")?;
    let (outer, inner) = plugin.call("echo", Format::Postcard, &input, |output| {
        let inner = plugin.call("echo", Format::Postcard, &input, <[u8]>::to_vec);
        (output.to_vec(), inner)
    })?;
    assert_eq!(postcard::from_bytes::<String>(&outer)?, "outer");
    assert!(
        matches!(&inner, Err(Error::Reentrant { entry, .. }) if entry == "echo"),
        "{inner:?}"
    );
    // Once the output is read the plugin is callable again, from this thread and others.
    plugin.call("echo", Format::Postcard, &input, <[u8]>::to_vec)?;
    let other = plugin.clone();
    std::thread::spawn(move || other.call("echo", Format::Postcard, &input, <[u8]>::to_vec))
        .join()
        .expect("no panic")?;
    Ok(())
}
