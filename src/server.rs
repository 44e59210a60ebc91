//! Assembles the Pingora server: the proxy service, the admin listener, the demo upstream.
use crate::cli::ServeArgs;

pub fn serve(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("serve: under construction")
}
