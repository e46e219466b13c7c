//! The `homeiq` binary: installs the TLS provider, parses the command line and runs it.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's allocator (why: [`homeiq::memory`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    homeiq::memory::tune_allocator();
    // one rustls crypto provider for reqwest and tokio-tungstenite; must precede any TLS use
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = homeiq::cli::Cli::parse();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let code = runtime.block_on(homeiq::cli::run(cli));
            // the shutdown stages kept their deadline; blocking work still under way (a slow
            // disk) must not hold up the exit
            runtime.shutdown_timeout(homeiq::app::EXIT_GRACE);
            code
        }
        Err(e) => {
            eprintln!("homeiq: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
