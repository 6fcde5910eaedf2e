#[dlinkwm::entry]
extern "C" fn greet() -> i32 {
    0
}

fn main() {}
