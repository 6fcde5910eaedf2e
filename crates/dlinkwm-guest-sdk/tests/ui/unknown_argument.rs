#[dlinkwm::entry(export = "other")]
fn greet() -> String {
    String::new()
}

fn main() {}
