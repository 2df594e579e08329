fn main() -> std::process::ExitCode {
    jarvis::cli::run()
}
