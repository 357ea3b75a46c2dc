//! `revive`: build, convert and inspect checkpoint images, as OCI image archives (files),
//! with no daemon. See `revive --help` and docs/checkpoint-images.md, "The revive CLI".

fn main() -> std::process::ExitCode {
    revive_cli::command::main()
}
