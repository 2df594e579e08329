//! One command of an attempt and what became of it, and the attempt's log as a fold
//! over them.
//!
//! The runner's outcome is mapped once, into [`StepOutcome`]; the LLM agent's tools
//! and the pipeline both read that type. [`AttemptLog::apply`] is the only place that
//! decides what a step means for the attempt (go on, wait for a person, stop), so it
//! is a pure function and tested with a table.

use serde::{Deserialize, Serialize};

use crate::domain::alert::AlertState;
use crate::exec::runner::RunOutcome;
use crate::safety::Verdict;

/// Why a command did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The safety gate blocked it.
    Blocked,
    RateLimited,
    CircuitOpen,
    /// It could not be started (SSH error, unknown host).
    CouldNotRun,
}

/// What became of one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StepOutcome {
    Completed {
        /// Judged read-only by the gate.
        diagnostic: bool,
        exit_code: Option<i32>,
        timed_out: bool,
        /// stdout then stderr.
        output: String,
        /// stderr alone, for the failure message.
        #[serde(default)]
        stderr: String,
    },
    /// Held for a person's decision.
    AwaitingApproval { approval_id: String, reason: String },
    /// A person approved it and it ran.
    Approved {
        exit_code: Option<i64>,
        output: String,
    },
    /// A person denied it, or the approval expired or was re-judged as blocked.
    NotApproved { why: String },
    /// It did not run.
    Refused { refusal: Refusal, why: String },
    /// The host is offline: nothing can run there now.
    HostOffline,
}

impl From<RunOutcome> for StepOutcome {
    fn from(o: RunOutcome) -> Self {
        match o {
            RunOutcome::Completed {
                judgement,
                exit_code,
                stdout,
                stderr,
                timed_out,
                ..
            } => Self::Completed {
                diagnostic: judgement.verdict == Verdict::Diagnostic,
                exit_code,
                timed_out,
                output: format!("{stdout}{stderr}"),
                stderr,
            },
            RunOutcome::AwaitingApproval {
                judgement,
                approval_id,
            } => Self::AwaitingApproval {
                approval_id,
                reason: judgement.reason,
            },
            RunOutcome::Blocked { judgement } => Self::Refused {
                refusal: Refusal::Blocked,
                why: format!(
                    "blocked by the safety gate ({}): {}",
                    judgement.rule, judgement.reason
                ),
            },
            RunOutcome::RateLimited {
                action,
                retry_after_seconds,
                ..
            } => Self::Refused {
                refusal: Refusal::RateLimited,
                why: format!("rate limited ({action}); retry in {retry_after_seconds}s"),
            },
            RunOutcome::CircuitOpen {
                action,
                retry_after_seconds,
                ..
            } => Self::Refused {
                refusal: Refusal::CircuitOpen,
                why: format!(
                    "circuit open for {action} (it kept failing); retry in {retry_after_seconds}s"
                ),
            },
            RunOutcome::HostOffline { .. } => Self::HostOffline,
            RunOutcome::Failed { error, .. } => Self::Refused {
                refusal: Refusal::CouldNotRun,
                why: error,
            },
        }
    }
}

impl StepOutcome {
    /// It ran, or will run once a person approves.
    pub fn ran(&self) -> bool {
        matches!(
            self,
            Self::Completed { .. } | Self::AwaitingApproval { .. } | Self::Approved { .. }
        )
    }

    /// It ran (or waits for approval to run) and is not read-only.
    pub fn changed_something(&self) -> bool {
        match self {
            Self::Completed { diagnostic, .. } => !diagnostic,
            Self::AwaitingApproval { .. } | Self::Approved { .. } => true,
            Self::NotApproved { .. } | Self::Refused { .. } | Self::HostOffline => false,
        }
    }
}

/// Who ran the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum By {
    /// The planner ran it while investigating (the LLM agent's `run_command`) and has
    /// seen its result: a refusal is a note, and only its last change decides.
    Planner,
    /// The pipeline runs the plan's commands in order: the first that fails ends it.
    Pipeline,
}

/// One command and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Step<'a> {
    pub command: &'a str,
    pub by: By,
    pub outcome: StepOutcome,
}

/// What the attempt does after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Park until a person decides approval `approval_id`.
    AwaitApproval {
        approval_id: String,
        reason: String,
    },
    /// Run nothing more.
    Stop,
}

/// The attempt so far: what ran, what it printed, and whether anything failed. Stored
/// with a parked attempt, so it resumes exactly where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttemptLog {
    /// Commands that ran (or were approved to run), in order.
    pub executed: Vec<String>,
    /// Short outputs, `$ command` headed.
    pub output: String,
    /// A state-changing command ran.
    pub changed: bool,
    /// A plan command failed: the attempt failed.
    pub failure: Option<String>,
    /// The planner's last change failed (a later one that works clears it).
    pub last_change_failed: Option<String>,
    /// A person said no, or the host went away.
    pub stopped: Option<(AlertState, String)>,
}

/// How an attempt ended, before verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Stop and tell a person (or suppress, for an offline host).
    Stopped { state: AlertState, reason: String },
    /// Worth another attempt.
    Failed(String),
    /// Only read-only commands ran.
    DiagnosticOnly,
    /// Something changed and nothing failed: verify it.
    Changed,
}

/// "exited 3", or "exited without a code" (killed by a signal).
fn exited(code: Option<impl std::fmt::Display>) -> String {
    match code {
        Some(c) => format!("exited {c}"),
        None => "exited without a code".into(),
    }
}

pub(crate) fn short(s: &str, max: usize) -> String {
    crate::notify::sinks::truncate(s.trim(), max)
}

impl AttemptLog {
    /// Folds one step into the log and says what to do next.
    pub fn apply(&mut self, step: Step<'_>) -> Next {
        let Step {
            command,
            by,
            outcome,
        } = step;
        // A held command is listed when it is asked for (it runs only once approved,
        // and its approval's outcome follows as a step of the same command).
        if matches!(
            outcome,
            StepOutcome::Completed { .. } | StepOutcome::AwaitingApproval { .. }
        ) {
            self.executed.push(command.to_owned());
        }
        let changes = outcome.changed_something();
        self.changed |= changes;
        // The failure a step reports, if it failed.
        let failed = match outcome {
            StepOutcome::Completed {
                exit_code,
                timed_out,
                output,
                stderr,
                ..
            } => {
                self.output
                    .push_str(&format!("$ {command}\n{}\n", short(&output, 800)));
                if timed_out {
                    Some(format!("`{command}` timed out"))
                } else if exit_code != Some(0) {
                    Some(match by {
                        By::Planner => format!("`{command}` {}", exited(exit_code)),
                        By::Pipeline => {
                            format!("`{command}` {}: {}", exited(exit_code), short(&stderr, 300))
                        }
                    })
                } else {
                    None
                }
            }
            StepOutcome::AwaitingApproval {
                approval_id,
                reason,
            } => {
                return Next::AwaitApproval {
                    approval_id,
                    reason,
                };
            }
            StepOutcome::Approved { exit_code, output } => {
                self.output.push_str(&format!(
                    "$ {command} (approved)\n{}\n",
                    short(&output, 800)
                ));
                (exit_code != Some(0))
                    .then(|| format!("`{command}` (approved) {}", exited(exit_code)))
            }
            StepOutcome::NotApproved { why } => {
                self.stopped = Some((AlertState::Escalated, why));
                return Next::Stop;
            }
            StepOutcome::Refused { why, .. } if by == By::Planner => {
                self.output
                    .push_str(&format!("$ {command} (not run: {})\n", short(&why, 200)));
                return Next::Continue;
            }
            StepOutcome::Refused {
                refusal: Refusal::CouldNotRun,
                why,
            } => Some(format!("`{command}`: {why}")),
            StepOutcome::Refused { why, .. } => Some(format!("`{command}` {why}")),
            StepOutcome::HostOffline if by == By::Planner => {
                self.output
                    .push_str(&format!("$ {command} (not run: host offline)\n"));
                return Next::Continue;
            }
            StepOutcome::HostOffline => {
                self.stopped = Some((AlertState::Suppressed, "host_offline".into()));
                return Next::Stop;
            }
        };
        match by {
            // A read-only command of the planner's failing says nothing about its fix:
            // only its last state-changing command decides.
            By::Planner if !changes => Next::Continue,
            By::Planner => {
                self.last_change_failed = failed;
                Next::Continue
            }
            By::Pipeline => match failed {
                Some(f) => {
                    self.failure = Some(f);
                    Next::Stop
                }
                None => Next::Continue,
            },
        }
    }

    /// How the attempt ended, once no step is left (or one said stop).
    pub fn ending(&self) -> Ending {
        if let Some((state, reason)) = &self.stopped {
            return Ending::Stopped {
                state: *state,
                reason: reason.clone(),
            };
        }
        if let Some(f) = self.failure.as_ref().or(self.last_change_failed.as_ref()) {
            return Ending::Failed(f.clone());
        }
        if self.changed {
            Ending::Changed
        } else {
            Ending::DiagnosticOnly
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(diagnostic: bool, code: i32) -> StepOutcome {
        StepOutcome::Completed {
            diagnostic,
            exit_code: Some(code),
            timed_out: false,
            output: format!("out {code}"),
            stderr: if code == 0 {
                String::new()
            } else {
                "err".into()
            },
        }
    }

    fn held() -> StepOutcome {
        StepOutcome::AwaitingApproval {
            approval_id: "a1".into(),
            reason: "unknown".into(),
        }
    }

    fn refused(refusal: Refusal) -> StepOutcome {
        StepOutcome::Refused {
            refusal,
            why: "no".into(),
        }
    }

    fn fold(steps: &[(By, StepOutcome)]) -> (AttemptLog, Vec<Next>) {
        let mut log = AttemptLog::default();
        let nexts = steps
            .iter()
            .enumerate()
            .map(|(i, (by, o))| {
                log.apply(Step {
                    command: &format!("c{i}"),
                    by: *by,
                    outcome: o.clone(),
                })
            })
            .collect();
        (log, nexts)
    }

    use By::{Pipeline as P, Planner as L};

    /// A row of the table: name, steps, the last step's `Next`, the ending, what ran.
    type Case<'a> = (&'a str, Vec<(By, StepOutcome)>, Next, Ending, Vec<&'a str>);

    /// Each row: the steps, what the last step says, how the attempt ends, what ran.
    #[test]
    fn the_attempt_table() {
        let failed = |s: &str| Ending::Failed(s.into());
        let stopped = |state, r: &str| Ending::Stopped {
            state,
            reason: r.into(),
        };
        let cases: Vec<Case> = vec![
            (
                "a change that works",
                vec![(P, done(false, 0))],
                Next::Continue,
                Ending::Changed,
                vec!["c0"],
            ),
            (
                "only reads",
                vec![(P, done(true, 0)), (L, done(true, 0))],
                Next::Continue,
                Ending::DiagnosticOnly,
                vec!["c0", "c1"],
            ),
            (
                "a plan command fails: stop",
                vec![(P, done(false, 3))],
                Next::Stop,
                failed("`c0` exited 3: err"),
                vec!["c0"],
            ),
            (
                "a read of the plan's fails too",
                vec![(P, done(true, 1))],
                Next::Stop,
                failed("`c0` exited 1: err"),
                vec!["c0"],
            ),
            (
                "the planner's failed read is not a failure",
                vec![(L, done(true, 1)), (L, done(false, 0))],
                Next::Continue,
                Ending::Changed,
                vec!["c0", "c1"],
            ),
            (
                "the planner's last change decides",
                vec![(L, done(false, 1)), (L, done(false, 0))],
                Next::Continue,
                Ending::Changed,
                vec!["c0", "c1"],
            ),
            (
                "the planner's last change failed",
                vec![(L, done(false, 0)), (L, done(false, 2))],
                Next::Continue,
                failed("`c1` exited 2"),
                vec!["c0", "c1"],
            ),
            (
                "a refusal told to the planner is a note",
                vec![(L, refused(Refusal::Blocked)), (L, done(false, 0))],
                Next::Continue,
                Ending::Changed,
                vec!["c1"],
            ),
            (
                "a plan command blocked fails the attempt",
                vec![(P, refused(Refusal::Blocked))],
                Next::Stop,
                failed("`c0` no"),
                vec![],
            ),
            (
                "could not run",
                vec![(P, refused(Refusal::CouldNotRun))],
                Next::Stop,
                failed("`c0`: no"),
                vec![],
            ),
            (
                "held for a person",
                vec![(P, held())],
                Next::AwaitApproval {
                    approval_id: "a1".into(),
                    reason: "unknown".into(),
                },
                Ending::Changed,
                vec!["c0"],
            ),
            (
                "approved and it worked",
                vec![(
                    P,
                    StepOutcome::Approved {
                        exit_code: Some(0),
                        output: "ok".into(),
                    },
                )],
                Next::Continue,
                Ending::Changed,
                vec![],
            ),
            (
                "approved and it failed",
                vec![(
                    P,
                    StepOutcome::Approved {
                        exit_code: Some(1),
                        output: "".into(),
                    },
                )],
                Next::Stop,
                failed("`c0` (approved) exited 1"),
                vec![],
            ),
            (
                "the planner's approved change failed",
                vec![(
                    L,
                    StepOutcome::Approved {
                        exit_code: None,
                        output: "".into(),
                    },
                )],
                Next::Continue,
                failed("`c0` (approved) exited without a code"),
                vec![],
            ),
            (
                "denied",
                vec![(
                    P,
                    StepOutcome::NotApproved {
                        why: "approval a1 denied by j".into(),
                    },
                )],
                Next::Stop,
                stopped(AlertState::Escalated, "approval a1 denied by j"),
                vec![],
            ),
            (
                "host offline: suppressed",
                vec![(P, done(false, 0)), (P, StepOutcome::HostOffline)],
                Next::Stop,
                stopped(AlertState::Suppressed, "host_offline"),
                vec!["c0"],
            ),
            (
                "host offline told to the planner",
                vec![(L, StepOutcome::HostOffline)],
                Next::Continue,
                Ending::DiagnosticOnly,
                vec![],
            ),
            (
                "a timeout fails",
                vec![(
                    P,
                    StepOutcome::Completed {
                        diagnostic: false,
                        exit_code: None,
                        timed_out: true,
                        output: "".into(),
                        stderr: "".into(),
                    },
                )],
                Next::Stop,
                failed("`c0` timed out"),
                vec!["c0"],
            ),
        ];
        for (name, steps, next, ending, executed) in cases {
            let (log, nexts) = fold(&steps);
            assert_eq!(nexts.last(), Some(&next), "{name}");
            assert_eq!(log.ending(), ending, "{name}");
            assert_eq!(log.executed, executed, "{name}");
        }
    }

    #[test]
    fn a_held_command_is_listed_once_whatever_the_decision() {
        for decision in [
            StepOutcome::Approved {
                exit_code: Some(0),
                output: "ok".into(),
            },
            StepOutcome::NotApproved {
                why: "denied".into(),
            },
        ] {
            let mut log = AttemptLog::default();
            for outcome in [held(), decision] {
                log.apply(Step {
                    command: "fix",
                    by: P,
                    outcome,
                });
            }
            assert_eq!(log.executed, ["fix"]);
        }
    }

    #[test]
    fn the_log_keeps_outputs_and_survives_a_park() {
        let (log, _) = fold(&[
            (L, done(true, 0)),
            (L, refused(Refusal::RateLimited)),
            (P, held()),
        ]);
        assert!(log.output.contains("$ c0\nout 0"), "{}", log.output);
        assert!(log.output.contains("$ c1 (not run: no)"), "{}", log.output);
        let stored = serde_json::to_string(&log).unwrap();
        assert_eq!(serde_json::from_str::<AttemptLog>(&stored).unwrap(), log);
    }
}
