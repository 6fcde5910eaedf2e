//! The main job: load the example plugins, call them, and print what they answer.
//!
//! ```text
//! cargo xtask build-plugins --release
//! cargo run --example hello_host -- [wasm-dir] [name]
//! ```

use anyhow::Context as _;
use dlinkwm_examples::{GreetParams, custom_greet};
use dlinkwm_host::{Config, Format, HostMethods, PluginHost, Stdio};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "wasm".to_owned());
    let name = args.next().unwrap_or_else(|| "World".to_owned());

    let mut methods = HostMethods::new();
    methods.register("custom_greet", |params: GreetParams| {
        println!("host: custom_greet called with name = {:?}", params.name);
        custom_greet(params)
    });
    // The plugins' own stdout ("Hello from WASM!") goes to this process's stdout.
    let mut config = Config::default();
    config.defaults.stdio = Some(Stdio::Inherit);
    let host = PluginHost::builder()
        .config(config)
        .host_methods(methods)
        .build()?;

    let hello_path = format!("{dir}/hello.wasm");
    let hello = host.load(&hello_path).with_context(|| {
        format!("cannot load {hello_path} (build it with `cargo xtask build-plugins`)")
    })?;
    let greeting: String = hello.call("greet", &GreetParams { name })?;
    println!("hello.wasm greet -> {greeting}");

    let test_path = format!("{dir}/wasm_test.wasm");
    let wasm_test = host
        .load(&test_path)
        .with_context(|| format!("cannot load {test_path}"))?;
    wasm_test.call_raw("dlinkwm_print_hello_wasm", &[])?;
    let answer: String = wasm_test.call("dlinkwm_call_host_method", &())?;
    println!("wasm_test.wasm dlinkwm_call_host_method -> {answer}");

    // The same plugin in the other guest languages (`hello_<language>.wasm`), called in JSON.
    let mut others: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {dir}"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("hello_") && name.ends_with(".wasm"))
        })
        .collect();
    others.sort();
    for path in others {
        let plugin = host
            .load(&path)
            .with_context(|| format!("cannot load {}", path.display()))?
            .with_format(Format::Json);
        let greeting: String = plugin.call(
            "greet",
            &GreetParams {
                name: "World".to_owned(),
            },
        )?;
        let file = path
            .file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
        println!("{file} greet -> {greeting}");
    }
    Ok(())
}
