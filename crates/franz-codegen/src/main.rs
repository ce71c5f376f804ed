//! `cargo run -p franz-codegen`: regenerates franz-protocol's messages from
//! `protocol-specs/` and formats them with rustfmt.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let root = franz_codegen::workspace_root();
    let apis = match franz_codegen::load_specs(&root.join("protocol-specs")) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("franz-codegen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = franz_codegen::output_dir();
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("franz-codegen: {e}");
        return ExitCode::FAILURE;
    }
    let files = franz_codegen::generate::generate_all(&apis);
    for (name, text) in &files {
        if let Err(e) = std::fs::write(out.join(name), text) {
            eprintln!("franz-codegen: writing {name}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let status = Command::new("rustfmt")
        .arg("--edition=2024")
        .args(files.iter().map(|(n, _)| out.join(n)))
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("franz-codegen: rustfmt failed on the generated files");
        return ExitCode::FAILURE;
    }
    println!(
        "franz-codegen: {} APIs, {} files in {}",
        apis.len(),
        files.len(),
        out.display()
    );
    ExitCode::SUCCESS
}
