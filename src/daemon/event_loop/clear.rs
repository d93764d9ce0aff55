//! `sup clear NAME…`: empty instances' output files while they run, as supervisorctl's
//! `clear` does. The truncation itself is `Outputs::clear` (the daemon's own descriptor, or a
//! path open that follows no symlink); this handler resolves names and words the outcomes.

use std::time::Instant;

use super::{fail, ok, Daemon};
use crate::control::proto::{Response, ResponseBody};

impl Daemon {
    pub(super) fn clear(&mut self, names: &[String], _now: Instant) -> Response {
        let ids = match self.select(names) {
            Ok(ids) => ids,
            Err(e) => return *e,
        };
        let mut outcomes = Vec::new();
        for id in ids {
            let Some(inst) = self.sup.get(id) else {
                continue;
            };
            let name = inst.core().name();
            // With `redirect_stderr` stderr goes into stdout's file, and its own is not the
            // job's to touch.
            let streams = if inst.spec.logs.redirect_stderr {
                vec![&inst.spec.stdout]
            } else {
                vec![&inst.spec.stdout, &inst.spec.stderr]
            };
            let mut paths: Vec<_> = streams
                .into_iter()
                .filter_map(|o| o.path_for(name))
                .collect();
            paths.dedup();
            if paths.is_empty() {
                outcomes.push(ok(name, "nothing to clear: its output goes to no file"));
                continue;
            }
            match self.logs.clear(name, &paths) {
                Ok(_) => {
                    let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                    log::info!("{name} cleared: emptied {}", list.join(", "));
                    outcomes.push(ok(name, "cleared"));
                }
                Err(e) => {
                    log::warn!("{name} clear: {e}");
                    outcomes.push(fail(name, &e));
                }
            }
        }
        Response::new(ResponseBody::Outcomes { outcomes })
    }
}
