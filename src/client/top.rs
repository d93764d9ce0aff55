//! `sup top`.
use crate::cli::Global;
use crate::fail::{Fail, Outcome};
pub fn run(_global: &Global) -> Result<Outcome, Fail> {
    Err(Fail::new("`sup top` is not built yet"))
}
