//! An OCI runtime for unit tests: no container, no root. Processes are pids no kernel hands
//! out (above `pid_max`'s ceiling), and their exits reach the shim through the same exit
//! monitor the reaper feeds ([`Fake::exit`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim::asynchronous::monitor::monitor_notify_by_pid;

use super::{CreateConfig, OciRuntime, RestoreConfig};
use crate::error::{Error, Result};
use crate::io::ProcessIo;
use crate::options::CheckpointConfig;
use crate::preflight::Unready;

/// Above the kernel's largest pid (2^22): signalling one can never reach a real process.
static NEXT_PID: AtomicU32 = AtomicU32::new(5_000_000);

/// What the fake does besides recording calls.
#[derive(Debug, Default, Clone)]
pub struct Script {
    /// The init exits with this code before `create` returns.
    pub die_in_create: Option<i32>,
    /// The init exits with this code before `start` returns (a command that ends at once).
    pub die_in_start: Option<i32>,
    /// How long every call but `ps` takes.
    pub delay: Duration,
    /// `exec` fails, as for a command the container does not have.
    pub fail_exec: bool,
    /// `start` fails, leaving the init created.
    pub fail_start: bool,
}

#[derive(Default)]
struct Record {
    /// Every call, as `<operation> <container id>`, in the order they began.
    calls: Vec<String>,
    /// Calls in flight per container.
    running: HashMap<String, usize>,
    /// Whether two calls on one container ever ran at once.
    overlapped: bool,
    /// The init's pid per container, while it lives.
    inits: HashMap<String, u32>,
}

/// The fake runtime; clones share their record.
#[derive(Clone, Default)]
pub struct Fake {
    script: Script,
    record: Arc<Mutex<Record>>,
}

impl Fake {
    pub fn new(script: Script) -> Fake {
        Fake {
            script,
            record: Arc::default(),
        }
    }

    /// A [`super::Connect`] that opens this fake for every container.
    pub fn connect(&self) -> super::Connect {
        let fake = self.clone();
        Arc::new(move |_, _, _| Ok(Arc::new(fake.clone()) as Arc<dyn OciRuntime>))
    }

    pub fn calls(&self) -> Vec<String> {
        self.record().calls.clone()
    }

    /// Whether two calls on one container ever overlapped.
    pub fn overlapped(&self) -> bool {
        self.record().overlapped
    }

    /// Reports `pid`'s exit as the shim's reaper does.
    pub async fn exit(pid: u32, code: i32) {
        let _ = monitor_notify_by_pid(pid as i32, code).await;
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the call and waits the scripted delay, counting it as running meanwhile.
    async fn call(&self, op: &str, id: &str) {
        {
            let mut record = self.record();
            record.calls.push(format!("{op} {id}"));
            let running = record.running.entry(id.to_string()).or_default();
            *running += 1;
            if *running > 1 {
                record.overlapped = true;
            }
        }
        tokio::time::sleep(self.script.delay).await;
        if let Some(running) = self.record().running.get_mut(id) {
            *running -= 1;
        }
    }

    fn new_pid(pid_file: &Path) -> Result<u32> {
        let pid = NEXT_PID.fetch_add(1, Ordering::Relaxed);
        std::fs::write(pid_file, pid.to_string())
            .map_err(Error::io(format!("writing {}", pid_file.display())))?;
        Ok(pid)
    }

    /// The init of `id` ends with `code` (a kill, a checkpoint with exit).
    async fn end_init(&self, id: &str, code: i32) -> Result<()> {
        let pid = self.record().inits.remove(id);
        match pid {
            Some(pid) => {
                Fake::exit(pid, code).await;
                // The shim's exit fan-in sees the exit before the call returns.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(())
            }
            None => Err(Error::Runtime(format!(
                "kill: runtime exited with exit status: 1: container {id} not running"
            ))),
        }
    }
}

#[async_trait]
impl OciRuntime for Fake {
    async fn create(
        &self,
        id: &str,
        _bundle: &Path,
        config: &CreateConfig,
        _io: &ProcessIo,
    ) -> Result<()> {
        self.call("create", id).await;
        let pid = Fake::new_pid(&config.pid_file)?;
        self.record().inits.insert(id.to_string(), pid);
        if let Some(code) = self.script.die_in_create {
            self.end_init(id, code).await?;
        }
        Ok(())
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.call("start", id).await;
        if self.script.fail_start {
            return Err(Error::Runtime(format!(
                "start: runtime exited with exit status: 1: cannot start {id}"
            )));
        }
        if let Some(code) = self.script.die_in_start {
            self.end_init(id, code).await?;
        }
        Ok(())
    }

    async fn exec(
        &self,
        id: &str,
        _spec: &oci_spec::runtime::Process,
        pid_file: &Path,
        _io: &ProcessIo,
    ) -> Result<()> {
        self.call("exec", id).await;
        if self.script.fail_exec {
            return Err(Error::Runtime(format!(
                "exec: runtime exited with exit status: 1: exec failed in {id}"
            )));
        }
        Fake::new_pid(pid_file).map(drop)
    }

    async fn kill(&self, id: &str, signal: u32, _all: bool) -> Result<()> {
        self.call("kill", id).await;
        self.end_init(id, 128 + signal as i32).await
    }

    async fn pause(&self, id: &str) -> Result<()> {
        self.call("pause", id).await;
        Ok(())
    }

    async fn resume(&self, id: &str) -> Result<()> {
        self.call("resume", id).await;
        Ok(())
    }

    async fn ps(&self, id: &str) -> Result<Vec<usize>> {
        Ok(self
            .record()
            .inits
            .get(id)
            .map(|pid| vec![*pid as usize])
            .unwrap_or_default())
    }

    async fn update(&self, id: &str, _resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        self.call("update", id).await;
        Ok(())
    }

    async fn delete(&self, id: &str, _force: bool) -> Result<()> {
        self.call("delete", id).await;
        self.record().inits.remove(id);
        Ok(())
    }

    async fn preflight(&self, _restore: bool) -> std::result::Result<(), Unready> {
        Ok(())
    }

    async fn checkpoint(
        &self,
        id: &str,
        config: &CheckpointConfig,
        _work: &Path,
        _log: &Path,
    ) -> Result<()> {
        self.call("checkpoint", id).await;
        if config.exit {
            self.end_init(id, 0).await?;
        }
        Ok(())
    }

    async fn restore(
        &self,
        id: &str,
        _bundle: &Path,
        config: &RestoreConfig,
        _io: &ProcessIo,
    ) -> Result<()> {
        self.call("restore", id).await;
        let pid = Fake::new_pid(&config.pid_file)?;
        self.record().inits.insert(id.to_string(), pid);
        Ok(())
    }

    fn hands_criu_the_freezer(&self) -> bool {
        false
    }
}
