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
    /// Whether `op` is allowed in this state for a container's init; refusals carry the
    /// words containerd's Go shim uses (`process/init_state.go`), which clients match on.
    pub fn check(self, op: Op) -> Result<()> {
        use Op::*;
        use Status::*;
        let refused = |msg: &str| Err(Error::FailedPrecondition(msg.to_string()));
        match (self, op) {
            (Created, Start | Kill | Delete | Exec | Update) => Ok(()),
            (Created, Pause) => refused("cannot pause task in created state"),
            (Created, Resume) => refused("cannot resume task in created state"),
            (Running, Pause | Kill | Exec | Update) => Ok(()),
            (Running, Start) => refused("cannot start a running process"),
            (Running, Resume) => refused("cannot resume a running process"),
            (Running, Delete) => refused("cannot delete a running process"),
            (Paused, Resume | Kill | Update) => Ok(()),
            (Paused, Start) => refused("cannot start a paused process"),
            (Paused, Pause) => refused("cannot pause a paused container"),
            (Paused, Exec) => refused("cannot exec in a paused state"),
            (Paused, Delete) => refused("cannot delete a paused process"),
            (Stopped, Delete) => Ok(()),
            (Stopped, Start) => refused("cannot start a stopped process"),
            (Stopped, Pause) => refused("cannot pause a stopped container"),
            (Stopped, Resume) => refused("cannot resume a stopped container"),
            (Stopped, Update) => refused("cannot update a stopped container"),
            (Stopped, Exec) => refused("cannot exec in a stopped state"),
            (Stopped, Kill) => Err(Error::NotFound("process already finished".into())),
            (Deleted, _) => Err(Error::NotFound("process already deleted".into())),
        }
    }

    /// The same for an exec process (`process/exec_state.go`): it can only be started,
    /// killed and deleted.
    pub fn check_exec(self, op: Op) -> Result<()> {
        use Op::*;
        use Status::*;
        let refused = |msg: &str| Err(Error::FailedPrecondition(msg.to_string()));
        match (self, op) {
            (Created, Start | Kill | Delete) | (Running | Paused, Kill) | (Stopped, Delete) => {
                Ok(())
            }
            (Running | Paused, Start) => refused("cannot start a running process"),
            (Running | Paused, Delete) => refused("cannot delete a running process"),
            (Stopped, Start) => refused("cannot start a stopped process"),
            (Stopped, Kill) => Err(Error::NotFound("process already finished".into())),
            (Deleted, _) => Err(Error::NotFound("process already deleted".into())),
            (_, op) => refused(&format!(
                "cannot {} an exec process",
                format!("{op:?}").to_lowercase()
            )),
        }
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
    /// An exec (vs the container's init): they follow different state tables.
    pub is_exec: bool,
    pub stdio: StdioSpec,
    pub io: ProcessIo,
    state: Mutex<State>,
    exit: watch::Sender<Option<Exit>>,
}

impl Process {
    pub fn new(is_exec: bool, stdio: StdioSpec, io: ProcessIo) -> Process {
        Process {
            is_exec,
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
        let status = self.status().await;
        if self.is_exec {
            status.check_exec(op)
        } else {
            status.check(op)
        }
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
        let init_ok = |s: Status, op: Op| match s {
            Status::Created => matches!(
                op,
                Op::Start | Op::Kill | Op::Delete | Op::Exec | Op::Update
            ),
            Status::Running => matches!(op, Op::Pause | Op::Kill | Op::Exec | Op::Update),
            Status::Paused => matches!(op, Op::Resume | Op::Kill | Op::Update),
            Status::Stopped => matches!(op, Op::Delete),
            Status::Deleted => false,
        };
        let exec_ok = |s: Status, op: Op| match s {
            Status::Created => matches!(op, Op::Start | Op::Kill | Op::Delete),
            Status::Running | Status::Paused => matches!(op, Op::Kill),
            Status::Stopped => matches!(op, Op::Delete),
            Status::Deleted => false,
        };
        for s in ALL_STATES {
            for op in ALL_OPS {
                assert_eq!(s.check(op).is_ok(), init_ok(s, op), "init {s:?} {op:?}");
                assert_eq!(
                    s.check_exec(op).is_ok(),
                    exec_ok(s, op),
                    "exec {s:?} {op:?}"
                );
            }
        }
        let msg = |r: Result<()>| r.unwrap_err().to_string();
        assert_eq!(
            msg(Status::Stopped.check(Op::Exec)),
            "cannot exec in a stopped state"
        );
        assert_eq!(
            msg(Status::Paused.check(Op::Exec)),
            "cannot exec in a paused state"
        );
        assert_eq!(
            msg(Status::Paused.check(Op::Pause)),
            "cannot pause a paused container"
        );
        assert_eq!(
            msg(Status::Running.check(Op::Resume)),
            "cannot resume a running process"
        );
        assert_eq!(
            msg(Status::Stopped.check(Op::Update)),
            "cannot update a stopped container"
        );
        assert!(
            matches!(Status::Stopped.check(Op::Kill), Err(Error::NotFound(m)) if m == "process already finished")
        );
        assert!(matches!(
            Status::Running.check(Op::Delete),
            Err(Error::FailedPrecondition(_))
        ));
    }

    #[tokio::test]
    async fn first_exit_wins_and_wakes_waiters() {
        let p = std::sync::Arc::new(Process::new(
            false,
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
