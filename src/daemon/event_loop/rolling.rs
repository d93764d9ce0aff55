//! `sup restart NAME --rolling`: one instance of each program at a time, the next once the
//! previous is running again (the queue itself is `core::deps::Rolling`).

use std::collections::VecDeque;
use std::time::Instant;

use super::{Answer, Daemon, Goal, Inputs, InstId, Item};
use crate::control::proto::{Outcome, Response};
use crate::core::deps::{Roll, Rolling};
use crate::core::Input;
use crate::daemon::http::api;

impl Daemon {
    pub(super) fn act_rolling(
        &mut self,
        slot: usize,
        names: &[String],
        wait: bool,
        now: Instant,
    ) -> Option<Response> {
        let ids = match self.select(names) {
            Ok(ids) => ids,
            Err(e) => return Some(*e),
        };
        if self.shutting_down {
            return Some(Response::error(api::SHUTTING_DOWN));
        }
        let mut by_program: Vec<(String, VecDeque<InstId>)> = Vec::new();
        let mut items = Vec::new();
        for &id in &ids {
            let Some(inst) = self.sup.get(id) else {
                continue;
            };
            self.order.rolling_failed.remove(&id);
            let program = inst.core().program().to_string();
            match by_program.iter_mut().find(|(p, _)| *p == program) {
                Some((_, q)) => q.push_back(id),
                None => by_program.push((program, VecDeque::from([id]))),
            }
            items.push(Item {
                id,
                name: inst.core().name().to_string(),
                goal: Goal::Restarted,
                outcome: None,
            });
        }
        for (_, queue) in by_program {
            if let Some((first, rolling)) = Rolling::start(queue) {
                self.apply(vec![(first, Input::Restart)], now);
                if !rolling.is_finished() {
                    self.order.rolling.push(rolling);
                }
            }
        }
        if !wait {
            for item in &mut items {
                item.outcome = Some(Outcome {
                    name: item.name.clone(),
                    ok: true,
                    message: "rolling restart under way (not waiting)".into(),
                });
            }
        }
        self.wait(slot, items, Answer::Outcomes, now)
    }

    /// The next step of each rolling restart whose current instance changed.
    pub(super) fn roll(&mut self) -> Inputs {
        let mut inputs = Vec::new();
        let mut rolling = std::mem::take(&mut self.order.rolling);
        for r in &mut rolling {
            let current = r.current();
            let state = self.sup.get(current).map(|i| i.core().state());
            match r.advance(state) {
                Roll::Wait | Roll::Done => {}
                Roll::Next(next) => inputs.push((next, Input::Restart)),
                Roll::Abandoned { at, rest } => {
                    let name = self.name(current).to_string();
                    for id in rest {
                        self.order.rolling_failed.insert(
                            id,
                            format!(
                                "not restarted: the rolling restart stopped at {name} ({})",
                                at.as_str()
                            ),
                        );
                    }
                }
            }
        }
        rolling.retain(|r| !r.is_finished());
        // Rolling restarts started by what was just fed come after these.
        rolling.append(&mut self.order.rolling);
        self.order.rolling = rolling;
        inputs
    }
}
