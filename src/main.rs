use clap::Parser;

fn main() {
    let cli = relief_ledger::cli::Cli::parse();
    match relief_ledger::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("relief-ledger: {e}");
            std::process::exit(2);
        }
    }
}
