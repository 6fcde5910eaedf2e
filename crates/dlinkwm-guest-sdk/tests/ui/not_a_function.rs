#[dlinkwm::entry]
struct Greeter;

fn main() {}
