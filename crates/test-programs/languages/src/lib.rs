//! The example plugins in C, AssemblyScript, Zig, Go (core modules), Python and JavaScript
//! (components), built from source by this crate's build
//! script, for the tests. Each is built twice: as it is, and with the greeting changed to
//! "hello plugin v2 greets" (a second build with a different answer, for hot-reload tests).
//!
//! ```
//! for plugin in test_programs_languages::PLUGINS {
//!     assert!(std::path::Path::new(plugin.path).exists());
//!     assert!(std::path::Path::new(plugin.v2).exists());
//! }
//! ```

/// One language's example plugin.
#[derive(Debug, Clone, Copy)]
pub struct Plugin {
    /// The language (`c`, `assemblyscript`, `zig`, `go`).
    pub language: &'static str,
    /// The plugin built from `examples/plugins/<language>`.
    pub path: &'static str,
    /// The same plugin answering "hello plugin v2 greets ...".
    pub v2: &'static str,
    /// Whether it is a component (Python, JavaScript) rather than a core module.
    pub component: bool,
}

include!(concat!(env!("OUT_DIR"), "/languages.rs"));
