//! Paths of the guest programs the tests load, built from source by this crate's build script.
//!
//! ```
//! assert!(std::path::Path::new(test_programs_artifacts::HELLO).exists());
//! ```

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

pub mod registry;

/// `module` with a custom section appended: the same code under a different content hash, so
/// the engine must compile it anew (for reload tests and benchmarks).
pub fn with_custom_section(module: &[u8], payload: &[u8]) -> Vec<u8> {
    let name = b"dlinkwm-test";
    let mut body = vec![u8::try_from(name.len()).expect("short name")];
    body.extend_from_slice(name);
    body.extend_from_slice(payload);
    let mut bytes = module.to_vec();
    bytes.push(0); // custom section id
    let mut size = body.len();
    loop {
        // Unsigned LEB128.
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(&body);
    bytes
}
