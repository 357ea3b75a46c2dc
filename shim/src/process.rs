//! Processes of a container (its init and its execs) and their lifecycle, as an explicit
//! state machine: every operation checks the current state and refuses with a specific
//! error, as containerd's Go shim does in `process/init_state.go`.

use std::time::SystemTime;

use tokio::sync::{Mutex, watch};

use crate::error::{Error, Result};
use crate::io::{ProcessIo, StdioSpec};

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
    Deleted,
}

/// Operations whose legality depends on the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Pause,
    Resume,
    Kill,
    Delete,
    Exec,
    Update,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
            Status::Deleted => "deleted",
        }
    }

    /// Whether `op` is allowed in this state; the error names both.
    pub fn check(self, op: Op) -> Result<()> {
        use Op::*;
        use Status::*;
        let allowed = matches!(
            (self, op),
            (Created, Start | Kill | Delete)
                | (Running, Pause | Kill | Exec | Update)
                | (Paused, Resume | Kill | Update)
                | (Stopped, Delete)
        );
        if allowed {
            return Ok(());
        }
        Err(match (self, op) {
            (Stopped, Kill) => Error::NotFound("process already finished".into()),
            (Deleted, _) => Error::NotFound("process already deleted".into()),
            (Running | Paused, Delete) => Error::FailedPrecondition(format!(
                "cannot delete a {} process: kill it first",
                self.name()
            )),
            _ => Error::FailedPrecondition(
                format!("cannot {op:?} a {} process", self.name()).to_lowercase(),
            ),
        })
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    pub at: SystemTime,
}

#[derive(Debug)]
struct State {
    status: Status,
    pid: u32,
}

/// One process: the container's init (`exec_id` empty) or an exec.
pub struct Process {
    pub stdio: StdioSpec,
    pub io: ProcessIo,
    state: Mutex<State>,
    exit: watch::Sender<Option<Exit>>,
}

impl Process {
    pub fn new(stdio: StdioSpec, io: ProcessIo) -> Process {
        Process {
            stdio,
            io,
            state: Mutex::new(State {
                status: Status::Created,
                pid: 0,
            }),
            exit: watch::channel(None).0,
        }
    }

    pub async fn status(&self) -> Status {
        self.state.lock().await.status
    }

    pub async fn pid(&self) -> u32 {
        self.state.lock().await.pid
    }

    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    pub async fn check(&self, op: Op) -> Result<()> {
        self.status().await.check(op)
    }

    pub async fn set_pid(&self, pid: u32) {
        self.state.lock().await.pid = pid;
    }

    /// Moves to `status` (after the operation that causes it succeeded).
    pub async fn set_status(&self, status: Status) {
        let mut state = self.state.lock().await;
        // An exit recorded meanwhile wins over a late "running".
        if state.status == Status::Stopped && status != Status::Deleted {
            return;
        }
        state.status = status;
    }

    /// Records the exit; only the first one counts. Returns false if already exited.
    pub async fn set_exited(&self, status: u32) -> bool {
        let mut state = self.state.lock().await;
        if self.exit.borrow().is_some() {
            return false;
        }
        state.status = Status::Stopped;
        self.exit.send_replace(Some(Exit {
            status,
            at: SystemTime::now(),
        }));
        true
    }

    /// Waits for the exit.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as the process: unreachable, but never hang.
                return Exit {
                    status: 255,
                    at: SystemTime::now(),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_OPS: [Op; 7] = [
        Op::Start,
        Op::Pause,
        Op::Resume,
        Op::Kill,
        Op::Delete,
        Op::Exec,
        Op::Update,
    ];
    const ALL_STATES: [Status; 5] = [
        Status::Created,
        Status::Running,
        Status::Paused,
        Status::Stopped,
        Status::Deleted,
    ];

    /// Every (state, operation) pair, against the table containerd's Go shim implements.
    #[test]
    fn transition_table() {
        let expected_ok = |s: Status, op: Op| match s {
            Status::Created => matches!(op, Op::Start | Op::Kill | Op::Delete),
            Status::Running => matches!(op, Op::Pause | Op::Kill | Op::Exec | Op::Update),
            Status::Paused => matches!(op, Op::Resume | Op::Kill | Op::Update),
            Status::Stopped => matches!(op, Op::Delete),
            Status::Deleted => false,
        };
        for s in ALL_STATES {
            for op in ALL_OPS {
                assert_eq!(s.check(op).is_ok(), expected_ok(s, op), "{s:?} {op:?}");
            }
        }
        assert!(
            matches!(Status::Stopped.check(Op::Kill), Err(Error::NotFound(m)) if m == "process already finished")
        );
        assert!(matches!(
            Status::Running.check(Op::Delete),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(
            matches!(Status::Created.check(Op::Pause), Err(Error::FailedPrecondition(m)) if m == "cannot pause a created process")
        );
    }

    #[tokio::test]
    async fn first_exit_wins_and_wakes_waiters() {
        let p = std::sync::Arc::new(Process::new(
            StdioSpec::default(),
            ProcessIo::new("c", "ns", &StdioSpec::default(), 0, 0)
                .await
                .unwrap(),
        ));
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.wait().await }
        });
        p.set_status(Status::Running).await;
        assert!(p.set_exited(3).await);
        assert!(!p.set_exited(9).await);
        assert_eq!(waiter.await.unwrap().status, 3);
        assert_eq!(p.status().await, Status::Stopped);
        // A late "running" does not resurrect it.
        p.set_status(Status::Running).await;
        assert_eq!(p.status().await, Status::Stopped);
    }
}
