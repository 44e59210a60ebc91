//! The demo upstream.
pub fn run_standalone(_listen: &str) -> anyhow::Result<()> {
    anyhow::bail!("demo-upstream: under construction")
}
