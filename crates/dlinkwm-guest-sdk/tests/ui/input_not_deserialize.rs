struct NotSerde;

#[dlinkwm::entry]
fn take(value: NotSerde) -> u32 {
    let _ = value;
    1
}

fn main() {}
