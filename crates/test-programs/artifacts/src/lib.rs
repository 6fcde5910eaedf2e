//! Paths of the guest programs the tests load, built from source by this crate's build script.
//!
//! ```
//! assert!(std::path::Path::new(test_programs_artifacts::HELLO).exists());
//! ```

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
