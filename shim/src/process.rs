//! Processes of a container (its init and its execs) and their lifecycle, as an explicit
//! state machine that the process owns, as containerd's Go shim does in
//! `process/init_state.go` and `process/exec_state.go`.
//!
//! Every operation takes the process's one lock ([`Process::lock`]) and holds it across
//! the state check ([`Locked::check`]), the runtime call and the transition
//! ([`Locked::transition`]), so a concurrent Start, Delete, Pause or Checkpoint of one
//! process runs one after the other and each sees the state the one before left. The
//! transition refuses whatever its table does not allow. Readers that must not wait behind
//! a runtime call (State, Pids, Stats, Wait) see the state as of the last transition
//! ([`Process::status`], [`Process::pid`], [`Process::wait`]).

use std::path::PathBuf;
use std::time::SystemTime;

use tokio::sync::{Mutex, MutexGuard, watch};

use crate::error::{Error, Result};
use crate::io::{ProcessIo, StdioSpec};
use crate::options::CriuFlags;

/// A container's init or one of its execs: they follow different state tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Init,
    Exec,
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    /// An init created from a checkpoint: no process exists until Start restores it.
    CreatedCheckpoint,
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
    Checkpoint,
}

/// A checkpoint the init is restored from at Start.
#[derive(Debug, Clone, PartialEq)]
pub struct Restore {
    pub image: PathBuf,
    pub work: Option<PathBuf>,
    pub no_pivot: bool,
    /// CRIU switches (containerd 1.7's legacy CreateOptions carry them).
    pub criu: CriuFlags,
}

/// The state and what only some states hold.
#[derive(Debug)]
enum State {
    Created,
    CreatedCheckpoint(Restore),
    Running,
    Paused,
    Stopped,
    Deleted,
}

impl State {
    fn status(&self) -> Status {
        match self {
            State::Created => Status::Created,
            State::CreatedCheckpoint(_) => Status::CreatedCheckpoint,
            State::Running => Status::Running,
            State::Paused => Status::Paused,
            State::Stopped => Status::Stopped,
            State::Deleted => Status::Deleted,
        }
    }
}

impl Status {
    /// The state's name in refusals and in `invalid state transition` errors.
    fn name(self) -> &'static str {
        match self {
            Status::Created | Status::CreatedCheckpoint => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
            Status::Deleted => "deleted",
        }
    }

    /// Whether `op` is allowed in this state for a process of `kind`; refusals carry the
    /// words containerd's Go shim uses (`process/init_state.go`, `exec_state.go`), which
    /// clients match on. An init created from a checkpoint answers as a created one.
    pub fn check(self, kind: Kind, op: Op) -> Result<()> {
        use Op::*;
        use Status::*;
        let refused = |msg: &str| Err(Error::FailedPrecondition(msg.to_string()));
        if kind == Kind::Exec {
            return match (self, op) {
                (Created | CreatedCheckpoint, Start | Kill | Delete)
                | (Running | Paused, Kill)
                | (Stopped, Delete) => Ok(()),
                (Running | Paused, Start) => refused("cannot start a running process"),
                (Running | Paused, Delete) => refused("cannot delete a running process"),
                (Stopped, Start) => refused("cannot start a stopped process"),
                (Stopped, Kill) => Err(Error::NotFound("process already finished".into())),
                (Deleted, _) => Err(Error::NotFound("process already deleted".into())),
                (_, op) => refused(&format!(
                    "cannot {} an exec process",
                    format!("{op:?}").to_lowercase()
                )),
            };
        }
        match (self, op) {
            (_, Checkpoint) => match self {
                Running | Paused => Ok(()),
                other => Err(Error::FailedPrecondition(format!(
                    "cannot checkpoint a task in {} state",
                    other.name()
                ))),
            },
            (Created | CreatedCheckpoint, Start | Kill | Delete | Exec | Update) => Ok(()),
            (Created | CreatedCheckpoint, Pause) => refused("cannot pause task in created state"),
            (Created | CreatedCheckpoint, Resume) => refused("cannot resume task in created state"),
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

    /// Whether a process of `kind` may move from this state to `to`: a start, a pause or
    /// resume, an exit, a delete. Nothing ever leaves Deleted, and an exec is never paused.
    pub fn may_become(self, kind: Kind, to: Status) -> bool {
        use Status::*;
        match (kind, self) {
            (Kind::Init, Created | CreatedCheckpoint) => matches!(to, Running | Stopped | Deleted),
            (Kind::Init, Running) => matches!(to, Paused | Stopped),
            (Kind::Init, Paused) => matches!(to, Running | Stopped),
            (Kind::Exec, Created) => matches!(to, Running | Stopped | Deleted),
            (Kind::Exec, Running) => to == Stopped,
            (Kind::Exec, CreatedCheckpoint | Paused) => false,
            (_, Stopped) => to == Deleted,
            (_, Deleted) => false,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    pub at: SystemTime,
}

/// What readers see without taking the lock: the state after the last transition.
#[derive(Debug, Clone, Copy)]
struct Seen {
    status: Status,
    pid: u32,
    exit: Option<Exit>,
}

struct Machine {
    state: State,
    pid: u32,
}

/// One process: the container's init or an exec.
pub struct Process {
    pub kind: Kind,
    pub stdio: StdioSpec,
    pub io: ProcessIo,
    machine: Mutex<Machine>,
    /// Written only by the holder of `machine`.
    seen: watch::Sender<Seen>,
}

impl Process {
    fn with(kind: Kind, stdio: StdioSpec, io: ProcessIo, state: State, pid: u32) -> Process {
        let seen = Seen {
            status: state.status(),
            pid,
            exit: None,
        };
        Process {
            kind,
            stdio,
            io,
            machine: Mutex::new(Machine { state, pid }),
            seen: watch::channel(seen).0,
        }
    }

    /// A container's init that the runtime created as `pid`.
    pub fn init(stdio: StdioSpec, io: ProcessIo, pid: u32) -> Process {
        Process::with(Kind::Init, stdio, io, State::Created, pid)
    }

    /// A container's init to be restored from `restore` at Start.
    pub fn from_checkpoint(stdio: StdioSpec, io: ProcessIo, restore: Restore) -> Process {
        Process::with(Kind::Init, stdio, io, State::CreatedCheckpoint(restore), 0)
    }

    /// An exec, added but not started.
    pub fn exec(stdio: StdioSpec, io: ProcessIo) -> Process {
        Process::with(Kind::Exec, stdio, io, State::Created, 0)
    }

    /// Takes the process's lock, for one operation: check, runtime call, transition.
    pub async fn lock(&self) -> Locked<'_> {
        Locked {
            kind: self.kind,
            machine: self.machine.lock().await,
            seen: &self.seen,
        }
    }

    /// The state after the last transition (never waits for an operation in flight).
    pub fn status(&self) -> Status {
        self.seen.borrow().status
    }

    /// The pid after the last transition; 0 before the process exists.
    pub fn pid(&self) -> u32 {
        self.seen.borrow().pid
    }

    pub fn exit(&self) -> Option<Exit> {
        self.seen.borrow().exit
    }

    /// Records the exit and moves to Stopped; only the first exit counts. Returns false if
    /// the process had already exited. A deleted process keeps its state, but its exit
    /// still wakes the waiters.
    pub async fn set_exited(&self, status: u32) -> bool {
        let mut locked = self.lock().await;
        if locked.seen.borrow().exit.is_some() {
            return false;
        }
        let exit = Exit {
            status,
            at: SystemTime::now(),
        };
        locked.seen.send_modify(|seen| seen.exit = Some(exit));
        if locked.status() != Status::Deleted {
            // Every state but Deleted may become Stopped, and Stopped has no exit yet.
            let _ = locked.transition(Status::Stopped);
        }
        true
    }

    /// Waits for the exit.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.seen.subscribe();
        match rx.wait_for(|seen| seen.exit.is_some()).await {
            Ok(seen) => seen.exit.unwrap_or(Exit {
                status: 255,
                at: SystemTime::now(),
            }),
            // The sender lives as long as the process: unreachable, but never hang.
            Err(_) => Exit {
                status: 255,
                at: SystemTime::now(),
            },
        }
    }
}

/// A process held for one operation (see [`Process::lock`]).
pub struct Locked<'a> {
    kind: Kind,
    machine: MutexGuard<'a, Machine>,
    seen: &'a watch::Sender<Seen>,
}

impl Locked<'_> {
    pub fn status(&self) -> Status {
        self.machine.state.status()
    }

    pub fn pid(&self) -> u32 {
        self.machine.pid
    }

    /// Whether `op` is allowed now (see [`Status::check`]).
    pub fn check(&self, op: Op) -> Result<()> {
        self.status().check(self.kind, op)
    }

    /// The checkpoint an init created from one is restored from.
    pub fn restore(&self) -> Option<&Restore> {
        match &self.machine.state {
            State::CreatedCheckpoint(restore) => Some(restore),
            _ => None,
        }
    }

    /// Moves to `to`, if the table allows it from the current state. Only a recorded exit
    /// stops a process ([`Process::set_exited`]), so Stopped always has an exit to wait for.
    pub fn transition(&mut self, to: Status) -> Result<()> {
        let from = self.status();
        let unexited = to == Status::Stopped && self.seen.borrow().exit.is_none();
        if !from.may_become(self.kind, to) || unexited {
            return Err(Error::InvalidTransition {
                from: from.name(),
                to: to.name(),
            });
        }
        self.machine.state = match to {
            Status::Created => State::Created,
            // Only a Create from a checkpoint enters it (see `from_checkpoint`); the
            // table above has refused it already.
            Status::CreatedCheckpoint => {
                return Err(Error::InvalidTransition {
                    from: from.name(),
                    to: to.name(),
                });
            }
            Status::Running => State::Running,
            Status::Paused => State::Paused,
            Status::Stopped => State::Stopped,
            Status::Deleted => State::Deleted,
        };
        self.seen.send_modify(|seen| seen.status = to);
        Ok(())
    }

    /// Moves to Running as `pid` (after the runtime started, exec'd or restored it).
    pub fn started(&mut self, pid: u32) -> Result<()> {
        self.transition(Status::Running)?;
        self.machine.pid = pid;
        self.seen.send_modify(|seen| seen.pid = pid);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_OPS: [Op; 8] = [
        Op::Start,
        Op::Pause,
        Op::Resume,
        Op::Kill,
        Op::Delete,
        Op::Exec,
        Op::Update,
        Op::Checkpoint,
    ];
    const ALL_STATES: [Status; 6] = [
        Status::Created,
        Status::CreatedCheckpoint,
        Status::Running,
        Status::Paused,
        Status::Stopped,
        Status::Deleted,
    ];

    /// Every (state, operation) pair, against the table containerd's Go shim implements.
    #[test]
    fn operation_table() {
        let init_ok = |s: Status, op: Op| match s {
            Status::Created | Status::CreatedCheckpoint => matches!(
                op,
                Op::Start | Op::Kill | Op::Delete | Op::Exec | Op::Update
            ),
            Status::Running => matches!(
                op,
                Op::Pause | Op::Kill | Op::Exec | Op::Update | Op::Checkpoint
            ),
            Status::Paused => matches!(op, Op::Resume | Op::Kill | Op::Update | Op::Checkpoint),
            Status::Stopped => matches!(op, Op::Delete),
            Status::Deleted => false,
        };
        let exec_ok = |s: Status, op: Op| match s {
            Status::Created | Status::CreatedCheckpoint => {
                matches!(op, Op::Start | Op::Kill | Op::Delete)
            }
            Status::Running | Status::Paused => matches!(op, Op::Kill),
            Status::Stopped => matches!(op, Op::Delete),
            Status::Deleted => false,
        };
        for s in ALL_STATES {
            for op in ALL_OPS {
                let init = s.check(Kind::Init, op);
                assert_eq!(init.is_ok(), init_ok(s, op), "init {s:?} {op:?}");
                let exec = s.check(Kind::Exec, op);
                assert_eq!(exec.is_ok(), exec_ok(s, op), "exec {s:?} {op:?}");
                // Refusals are a precondition, or a process that is gone.
                for refusal in [init, exec].into_iter().filter_map(|r| r.err()) {
                    match refusal {
                        Error::FailedPrecondition(_) => {}
                        Error::NotFound(m) => assert!(
                            m == "process already finished" || m == "process already deleted",
                            "{s:?} {op:?}: {m}"
                        ),
                        other => panic!("{s:?} {op:?}: {other:?}"),
                    }
                }
            }
        }
        let msg = |s: Status, op: Op| s.check(Kind::Init, op).unwrap_err().to_string();
        let words = [
            (
                Status::Created,
                Op::Pause,
                "cannot pause task in created state",
            ),
            (
                Status::CreatedCheckpoint,
                Op::Resume,
                "cannot resume task in created state",
            ),
            (Status::Running, Op::Start, "cannot start a running process"),
            (
                Status::Running,
                Op::Resume,
                "cannot resume a running process",
            ),
            (
                Status::Running,
                Op::Delete,
                "cannot delete a running process",
            ),
            (Status::Paused, Op::Start, "cannot start a paused process"),
            (Status::Paused, Op::Pause, "cannot pause a paused container"),
            (Status::Paused, Op::Exec, "cannot exec in a paused state"),
            (Status::Paused, Op::Delete, "cannot delete a paused process"),
            (Status::Stopped, Op::Start, "cannot start a stopped process"),
            (
                Status::Stopped,
                Op::Pause,
                "cannot pause a stopped container",
            ),
            (
                Status::Stopped,
                Op::Resume,
                "cannot resume a stopped container",
            ),
            (
                Status::Stopped,
                Op::Update,
                "cannot update a stopped container",
            ),
            (Status::Stopped, Op::Exec, "cannot exec in a stopped state"),
            (Status::Stopped, Op::Kill, "process already finished"),
            (Status::Deleted, Op::Kill, "process already deleted"),
            (
                Status::Created,
                Op::Checkpoint,
                "cannot checkpoint a task in created state",
            ),
            (
                Status::CreatedCheckpoint,
                Op::Checkpoint,
                "cannot checkpoint a task in created state",
            ),
            (
                Status::Stopped,
                Op::Checkpoint,
                "cannot checkpoint a task in stopped state",
            ),
            (
                Status::Deleted,
                Op::Checkpoint,
                "cannot checkpoint a task in deleted state",
            ),
        ];
        for (s, op, want) in words {
            assert_eq!(msg(s, op), want, "{s:?} {op:?}");
        }
        let exec_msg = |s: Status, op: Op| s.check(Kind::Exec, op).unwrap_err().to_string();
        assert_eq!(
            exec_msg(Status::Running, Op::Pause),
            "cannot pause an exec process"
        );
        assert_eq!(
            exec_msg(Status::Created, Op::Exec),
            "cannot exec an exec process"
        );
        assert_eq!(
            exec_msg(Status::Running, Op::Delete),
            "cannot delete a running process"
        );
        assert_eq!(
            exec_msg(Status::Stopped, Op::Start),
            "cannot start a stopped process"
        );
    }

    /// Every (state, state) pair, against the transitions of the Go shim's state types.
    #[test]
    fn transition_table() {
        use Status::*;
        let init = [
            (Created, Running),
            (Created, Stopped),
            (Created, Deleted),
            (CreatedCheckpoint, Running),
            (CreatedCheckpoint, Stopped),
            (CreatedCheckpoint, Deleted),
            (Running, Paused),
            (Running, Stopped),
            (Paused, Running),
            (Paused, Stopped),
            (Stopped, Deleted),
        ];
        let exec = [
            (Created, Running),
            (Created, Stopped),
            (Created, Deleted),
            (Running, Stopped),
            (Stopped, Deleted),
        ];
        for from in ALL_STATES {
            for to in ALL_STATES {
                assert_eq!(
                    from.may_become(Kind::Init, to),
                    init.contains(&(from, to)),
                    "init {from:?} -> {to:?}"
                );
                assert_eq!(
                    from.may_become(Kind::Exec, to),
                    exec.contains(&(from, to)),
                    "exec {from:?} -> {to:?}"
                );
            }
        }
    }

    async fn null_io() -> ProcessIo {
        ProcessIo::new("c", "ns", &StdioSpec::default(), 0, 0)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn transition_refuses_what_the_table_lacks() {
        let p = Process::init(StdioSpec::default(), null_io().await, 7);
        let mut locked = p.lock().await;
        let err = locked.transition(Status::Paused).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid state transition \"created\" to \"paused\""
        );
        assert_eq!(locked.status(), Status::Created);
        locked.started(7).unwrap();
        assert!(
            locked.transition(Status::Stopped).is_err(),
            "stopped without an exit"
        );
        locked.transition(Status::Paused).unwrap();
        assert!(locked.transition(Status::Deleted).is_err());
        drop(locked);
        assert_eq!(p.status(), Status::Paused);
        assert_eq!(p.pid(), 7);
    }

    #[tokio::test]
    async fn a_checkpoint_is_held_until_start() {
        let restore = Restore {
            image: "/ck".into(),
            work: None,
            no_pivot: false,
            criu: CriuFlags::default(),
        };
        let p = Process::from_checkpoint(StdioSpec::default(), null_io().await, restore.clone());
        assert_eq!((p.status(), p.pid()), (Status::CreatedCheckpoint, 0));
        let mut locked = p.lock().await;
        assert_eq!(locked.restore(), Some(&restore));
        locked.started(42).unwrap();
        assert_eq!(locked.restore(), None);
        drop(locked);
        assert_eq!((p.status(), p.pid()), (Status::Running, 42));
    }

    #[tokio::test]
    async fn first_exit_wins_and_wakes_waiters() {
        let p = std::sync::Arc::new(Process::init(StdioSpec::default(), null_io().await, 1));
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.wait().await }
        });
        p.lock().await.started(1).unwrap();
        assert!(p.set_exited(3).await);
        assert!(!p.set_exited(9).await);
        assert_eq!(waiter.await.unwrap().status, 3);
        assert_eq!(p.status(), Status::Stopped);
        // A late "running" does not resurrect it.
        assert!(p.lock().await.started(1).is_err());
        assert_eq!(p.status(), Status::Stopped);
        p.lock().await.transition(Status::Deleted).unwrap();
        assert_eq!(p.status(), Status::Deleted);
    }

    #[tokio::test]
    async fn an_exit_waits_for_the_operation_in_flight() {
        let p = std::sync::Arc::new(Process::init(StdioSpec::default(), null_io().await, 1));
        let mut locked = p.lock().await;
        let exiting = tokio::spawn({
            let p = p.clone();
            async move { p.set_exited(0).await }
        });
        tokio::task::yield_now().await;
        assert!(p.exit().is_none());
        locked.started(1).unwrap();
        drop(locked);
        assert!(exiting.await.unwrap());
        assert_eq!(p.status(), Status::Stopped);
    }
}
