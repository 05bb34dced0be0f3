fn main() {
    let path = std::env::args().nth(1).unwrap();
    match pipewright_config::load_file(std::path::Path::new(&path), &Default::default()) {
        Ok(l) => println!("{}", serde_json::to_string_pretty(&l.pipeline).unwrap()),
        Err(e) => print!("{e}"),
    }
}
