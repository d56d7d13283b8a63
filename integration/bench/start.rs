//! The start both benchmarks share: `cargo bench --bench NAME -- [SCENARIO...]
//! [--seconds N]`, or the binary run as the app (`serve`) in a container,
//! or `app-image`: only build the app's image (`scripts/demo.sh` runs it).

use std::future::Future;

use crate::{app, stack::sh};

/// The scenarios asked for (none: all) and the seconds of load for each.
pub struct BenchArgs {
    pub seconds: u64,
    chosen: Vec<String>,
}

impl BenchArgs {
    fn parse(args: &[String], default_seconds: u64) -> Self {
        let seconds = args
            .iter()
            .position(|a| a == "--seconds")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(default_seconds);
        let chosen = args
            .iter()
            .enumerate()
            .filter(|(i, a)| !(a.starts_with("--") || *i > 0 && args[i - 1] == "--seconds"))
            .map(|(_, a)| a.clone())
            .collect();
        Self { seconds, chosen }
    }

    pub fn wants(&self, name: &str) -> bool {
        self.chosen.is_empty() || self.chosen.iter().any(|c| c == name)
    }
}

/// Serves as the app, or builds the test images and runs `bench`.
pub fn main<F: Future<Output = ()>>(default_seconds: u64, bench: impl FnOnce(BenchArgs) -> F) {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("serve") {
        return app::serve();
    }
    let args = BenchArgs::parse(&args, default_seconds);
    sh(
        "bash",
        &[concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-test-images.sh")],
    );
    // Rebuilt on every run, so it always holds the binary being measured.
    let exe = std::env::current_exe().expect("own executable");
    app::build_image(app::IMAGE, crate::stack::IMAGE, &exe, &["/app", "serve"], &[]);
    tokio::runtime::Runtime::new().expect("runtime").block_on(bench(args));
}
