#[dlinkwm::entry]
async fn greet(name: String) -> String {
    name
}

fn main() {}
