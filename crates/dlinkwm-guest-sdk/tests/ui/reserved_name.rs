#[dlinkwm::entry]
fn dlinkwm_alloc() -> u32 {
    0
}

#[dlinkwm::entry(name = "_initialize")]
fn setup() {}

fn main() {}
