//! Tasks and containers of a node through `ctr`, typed: a task's [`Status`], the tasks
//! `ctr task ls` lists, one [`poll`] with a deadline, waiting for a status, and one
//! [`remove`]. The lifecycle table, the scenarios, checkpoint images and the benchmarks all
//! go through these.

use std::fmt;
use std::ops::ControlFlow;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use crate::node::Node;

/// How long a wait for something that must happen (a status, a count) lasts.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often [`wait_status`] looks at `ctr task ls`.
const STATUS_INTERVAL: Duration = Duration::from_millis(50);

/// A task's status as `ctr task ls` prints it (containerd's `ProcessStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unknown,
    Created,
    Running,
    Stopped,
    Paused,
    Pausing,
}

impl Status {
    /// The word `ctr task ls` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "UNKNOWN",
            Status::Created => "CREATED",
            Status::Running => "RUNNING",
            Status::Stopped => "STOPPED",
            Status::Paused => "PAUSED",
            Status::Pausing => "PAUSING",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Status> {
        [
            Status::Unknown,
            Status::Created,
            Status::Running,
            Status::Stopped,
            Status::Paused,
            Status::Pausing,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| anyhow!("unknown task status {text:?}"))
    }
}

/// A task as `ctr task ls` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    /// The task's pid in the node's pid namespace.
    pub pid: u32,
    pub status: Status,
}

/// Parses `ctr task ls` (`TASK PID STATUS` and one line per task); lines of another shape
/// are not tasks.
pub fn parse_task_list(text: &str) -> Vec<Task> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            match cols.as_slice() {
                [id, pid, status] => Some(Task {
                    id: id.to_string(),
                    pid: pid.parse().ok()?,
                    status: status.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

/// The tasks `ctr task ls` lists.
pub fn tasks(node: &Node) -> Result<Vec<Task>> {
    Ok(parse_task_list(&node.ctr(&["task", "ls"])?))
}

/// Task `id` as `ctr task ls` lists it, if it does.
pub fn find_task(node: &Node, id: &str) -> Result<Option<Task>> {
    Ok(tasks(node)?.into_iter().find(|t| t.id == id))
}

/// Task `id` as `ctr task ls` lists it; fails when it is not listed.
pub fn task(node: &Node, id: &str) -> Result<Task> {
    find_task(node, id)?.with_context(|| format!("task {id} is not listed by ctr task ls"))
}

/// The status of task `id`; fails when it is not listed.
pub fn status(node: &Node, id: &str) -> Result<Status> {
    Ok(task(node, id)?.status)
}

/// Reads with `read` every `interval` until it breaks with a value, for at most `wait`. A
/// read that fails is retried like one that continues; after the deadline the poll fails with
/// the last read's error, or with the reason the last read continued.
pub fn poll<T>(
    wait: Duration,
    interval: Duration,
    mut read: impl FnMut() -> Result<ControlFlow<T, String>>,
) -> Result<T> {
    let deadline = Instant::now() + wait;
    loop {
        let last = read();
        if let Ok(ControlFlow::Break(value)) = last {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return match last {
                Ok(ControlFlow::Continue(why)) => Err(anyhow!(why)),
                Ok(ControlFlow::Break(_)) => unreachable!("a value is returned above"),
                Err(err) => Err(err),
            };
        }
        std::thread::sleep(interval);
    }
}

/// Waits until task `id` is listed with `want`; returns its pid. A task that is not listed
/// yet is waited for too.
pub fn wait_status(node: &Node, id: &str, want: Status) -> Result<u32> {
    poll(WAIT, STATUS_INTERVAL, || {
        Ok(match find_task(node, id)? {
            Some(task) if task.status == want => ControlFlow::Break(task.pid),
            now => ControlFlow::Continue(format!(
                "task {id} is {}, not {want}, after {WAIT:?}",
                now.map_or_else(
                    || "not listed by ctr task ls".into(),
                    |t| t.status.to_string()
                )
            )),
        })
    })
}

/// The arguments of `ctr run <flags> --runtime <runtime> <image> <id> <command>`.
pub fn run_args<'a>(
    flags: &[&'a str],
    runtime: &'a str,
    image: &'a str,
    id: &'a str,
    command: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["run"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--runtime", runtime, image, id]);
    args.extend_from_slice(command);
    args
}

/// Removes container `id`: its task, if it has one, is killed (SIGKILL) unless stopped,
/// waited for and deleted; then the container is deleted.
pub fn remove(node: &Node, id: &str) -> Result<()> {
    if let Some(task) = find_task(node, id)? {
        if task.status != Status::Stopped {
            node.ctr(&["task", "kill", "--signal", "SIGKILL", id])?;
            wait_status(node, id, Status::Stopped)?;
        }
        node.ctr(&["task", "delete", id])?;
    }
    node.ctr(&["container", "delete", id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_list_parses() {
        let text = "TASK          PID     STATUS\nrunc-v2-idle-0    1234    RUNNING\n\
                    broken line\nx    55    STOPPED\ny    56    SLEEPY\n";
        assert_eq!(
            parse_task_list(text),
            vec![
                Task {
                    id: "runc-v2-idle-0".into(),
                    pid: 1234,
                    status: Status::Running,
                },
                Task {
                    id: "x".into(),
                    pid: 55,
                    status: Status::Stopped,
                },
            ]
        );
    }

    #[test]
    fn statuses_read_back_what_they_print() {
        for word in [
            "UNKNOWN", "CREATED", "RUNNING", "STOPPED", "PAUSED", "PAUSING",
        ] {
            assert_eq!(word.parse::<Status>().unwrap().to_string(), word);
        }
        assert!("running".parse::<Status>().is_err());
    }

    #[test]
    fn poll_returns_the_first_value_and_fails_after_its_deadline() {
        let mut reads = 0;
        let got = poll(Duration::from_secs(5), Duration::from_millis(1), || {
            reads += 1;
            Ok(if reads == 3 {
                ControlFlow::Break(reads)
            } else {
                ControlFlow::Continue("not yet".into())
            })
        })
        .unwrap();
        assert_eq!(got, 3);
        let err = poll(Duration::from_millis(20), Duration::from_millis(5), || {
            Ok(ControlFlow::<(), _>::Continue("still nothing".into()))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "still nothing");
        let err = poll(Duration::from_millis(20), Duration::from_millis(5), || {
            Err::<ControlFlow<(), String>, _>(anyhow!("broken"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "broken");
    }
}
