//! The plugin binary. The plugin itself lands with the next issue; until then this binary
//! refuses to start so that nobody mistakes it for a working plugin.

fn main() -> std::process::ExitCode {
    eprintln!(
        "cln-magma {}: the plugin is not built yet (only the Magma API client and the simulator are). \
         See README.md.",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::FAILURE
}
