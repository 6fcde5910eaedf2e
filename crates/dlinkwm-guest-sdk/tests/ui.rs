//! Each misuse of `#[dlinkwm::entry]` gives a compile error pointing at the offending item.

#[test]
fn entry_macro_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
