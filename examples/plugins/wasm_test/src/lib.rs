//! The original DlinkWM test module, as its README shows it: a plain export that prints through
//! WASI and through the original `host.dlinkwm_host_print` import, and one that calls the
//! application's host method `custom_greet`.

use serde::Serialize;

#[link(wasm_import_module = "host")]
unsafe extern "C" {
    fn dlinkwm_host_print(ptr: *const u8);
}

fn host_print(text: &std::ffi::CStr) {
    // SAFETY: the host reads the NUL-terminated string during the call.
    unsafe { dlinkwm_host_print(text.as_ptr().cast()) }
}

/// Prints a greeting from the plugin and one through the host.
#[unsafe(no_mangle)]
pub extern "C" fn dlinkwm_print_hello_wasm() {
    println!("Hello from WASM!");
    host_print(c"Calling host method from WASM!");
}

#[derive(Serialize)]
struct GreetParams {
    name: &'static str,
}

/// Prints as `dlinkwm_print_hello_wasm` does, then calls the host method `custom_greet` and
/// returns its answer.
#[dlinkwm::entry]
pub fn dlinkwm_call_host_method() -> Result<String, dlinkwm::Error> {
    println!("Hello from WASM!");
    host_print(c"Calling host method from WASM!");
    println!("Calling custom host method...");
    let result: String = dlinkwm::host::call_with(
        dlinkwm::Format::Json,
        "custom_greet",
        &GreetParams { name: "WASM" },
    )?;
    println!("Result from custom host method: {result}");
    Ok(result)
}
