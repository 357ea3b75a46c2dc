//! The test harness of every end-to-end test binary (`harness = false` in Cargo.toml, built
//! on libtest-mimic): each test is a trial that `cargo test -- --list` lists and that runs
//! by name, with libtest's flags and output. A test that needs root, run without root, is
//! reported as ignored with the reason, never as passed.
//!
//! Trials may share a fixture ([`Shared`], e.g. one node for every row of the lifecycle
//! table): they run one at a time on it, the first of them that runs sets it up and the last
//! that runs tears it down, so a filter that selects some of them still starts one node.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Result;
use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// Why a test that needs root is ignored without it.
pub const NEEDS_ROOT: &str = "needs root, to start a node with real containerd, runc and CRIU: run \
                              `sudo make test`";

/// `None` when tests that need root can run here, else the reason they are ignored.
pub fn root_missing() -> Option<&'static str> {
    (!nix::unistd::geteuid().is_root()).then_some(NEEDS_ROOT)
}

/// A trial that needs root: ignored with [`NEEDS_ROOT`] without it; fails when `test`
/// panics.
fn e2e_trial(name: String, test: impl FnOnce() + Send + 'static) -> Trial {
    Trial::ignorable_test(name, move || {
        if let Some(reason) = root_missing() {
            return Ok(Completion::ignored_with(reason));
        }
        caught(test)?;
        Ok(Completion::Completed)
    })
}

/// Runs `test`, its panic turned into the trial's failure: the harness repeats the message
/// in its summary, after the logs a failing node prints, so the end of the output names
/// the cause.
fn caught(test: impl FnOnce()) -> std::result::Result<(), Failed> {
    catch_unwind(AssertUnwindSafe(test)).map_err(|panic| panic_message(panic.as_ref()).into())
}

/// The trials of one test binary.
pub struct Suite {
    args: Arguments,
    trials: Vec<Trial>,
    /// For every trial on a shared fixture: its index in `trials` and the fixture.
    shared: Vec<(usize, Arc<dyn Expect>)>,
}

impl Default for Suite {
    fn default() -> Self {
        Suite::new()
    }
}

impl Suite {
    /// A suite run with this process's command line (libtest's flags: a filter, `--exact`,
    /// `--list`, `--ignored`, `--test-threads`, ...).
    pub fn new() -> Suite {
        Suite {
            args: Arguments::from_args(),
            trials: Vec::new(),
            shared: Vec::new(),
        }
    }

    /// A test that needs root and starts what it needs (a node); it fails by panicking.
    pub fn e2e(&mut self, name: &str, test: impl FnOnce() + Send + 'static) -> &mut Suite {
        self.trials.push(e2e_trial(name.to_string(), test));
        self
    }

    /// A test that runs anywhere, root or not; it fails by panicking.
    pub fn test(&mut self, name: &str, test: impl FnOnce() + Send + 'static) -> &mut Suite {
        self.trials
            .push(Trial::test(name.to_string(), move || caught(test)));
        self
    }

    /// A test that needs root and runs on `fixture`, after the trials added on it before.
    pub fn on<F: Send + 'static>(
        &mut self,
        fixture: &Arc<Shared<F>>,
        name: &str,
        test: impl FnOnce(&mut F) -> Result<()> + Send + 'static,
    ) -> &mut Suite {
        let fixture_of_trial = Arc::clone(fixture);
        let trial = Trial::ignorable_test(name.to_string(), move || {
            if let Some(reason) = root_missing() {
                return Ok(Completion::ignored_with(reason));
            }
            fixture_of_trial.run(test).map(|()| Completion::Completed)
        });
        self.shared
            .push((self.trials.len(), Arc::clone(fixture) as Arc<dyn Expect>));
        self.trials.push(trial);
        self
    }

    /// Runs the trials the command line selects; the exit code says whether all passed.
    pub fn run(self) -> ExitCode {
        if !self.args.list {
            for (index, fixture) in &self.shared {
                let trial = &self.trials[*index];
                if !self.args.is_filtered_out(trial) && !self.args.is_ignored(trial) {
                    fixture.expect_one();
                }
            }
        }
        libtest_mimic::run(&self.args, self.trials).exit_code()
    }
}

/// The `main` of a test binary whose tests are all end-to-end ([`Suite::e2e`]): each entry
/// is a function run as the test of its name, or `name => expression`, the expression run as
/// test `name`.
#[macro_export]
macro_rules! e2e_main {
    (@add $suite:ident, $test:ident) => {
        $suite.e2e(stringify!($test), $test);
    };
    (@add $suite:ident, $test:ident => $call:expr) => {
        $suite.e2e(stringify!($test), || $call);
    };
    ($($test:ident $(=> $call:expr)?),+ $(,)?) => {
        fn main() -> ::std::process::ExitCode {
            let mut suite = $crate::harness::Suite::new();
            $( $crate::e2e_main!(@add suite, $test $(=> $call)?); )+
            suite.run()
        }
    };
}

/// A fixture that is told how many trials will run on it.
trait Expect: Send + Sync {
    fn expect_one(&self);
}

type SetUp<F> = Arc<dyn Fn() -> Result<F> + Send + Sync>;
type TearDown<F> = Box<dyn Fn(F, bool) -> Result<()> + Send + Sync>;

/// A fixture that trials share, used by one trial at a time.
pub struct Shared<F> {
    set_up: SetUp<F>,
    tear_down: TearDown<F>,
    state: Mutex<State<F>>,
}

struct State<F> {
    /// The fixture once set up; the error when setting it up failed.
    fixture: Option<std::result::Result<F, String>>,
    /// The thread that set the fixture up, alive until it is torn down: what a fixture
    /// starts may die with the thread that started it (a node's init asks for
    /// `PR_SET_PDEATHSIG`), and the test harness's worker threads end as soon as no trial
    /// is left for them, while trials on other threads still use the fixture.
    keeper: Option<Keeper>,
    /// Trials selected to run on it that have not finished.
    remaining: usize,
    /// Whether a trial on it failed.
    failed: bool,
}

impl<F: Send + 'static> Shared<F> {
    /// A fixture made by `set_up` before the first trial that runs on it, and given to
    /// `tear_down` (with whether a trial failed) after the last; a failing tear-down fails
    /// that last trial.
    pub fn new(
        set_up: impl Fn() -> Result<F> + Send + Sync + 'static,
        tear_down: impl Fn(F, bool) -> Result<()> + Send + Sync + 'static,
    ) -> Arc<Shared<F>> {
        Arc::new(Shared {
            set_up: Arc::new(set_up),
            tear_down: Box::new(tear_down),
            state: Mutex::new(State {
                fixture: None,
                keeper: None,
                remaining: 0,
                failed: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<F>> {
        // A trial's panic is caught below while the lock is held, so the state stays
        // consistent even when the mutex reports poisoning.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `test` on the fixture, setting it up first if no trial did; tears it down after
    /// the last selected trial.
    fn run(&self, test: impl FnOnce(&mut F) -> Result<()>) -> std::result::Result<(), Failed> {
        let mut state = self.lock();
        if state.fixture.is_none() {
            let (keeper, fixture) = Keeper::set_up(Arc::clone(&self.set_up));
            state.keeper = Some(keeper);
            state.fixture = Some(fixture);
        }
        let outcome = match state.fixture.as_mut() {
            Some(Ok(fixture)) => match catch_unwind(AssertUnwindSafe(|| test(fixture))) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(format!("{err:#}")),
                Err(panic) => Err(panic_message(panic.as_ref())),
            },
            Some(Err(err)) => Err(format!("the shared fixture could not be set up: {err}")),
            None => unreachable!("the fixture is set up above"),
        };
        state.failed |= outcome.is_err();
        state.remaining = state.remaining.saturating_sub(1);
        let torn_down = if state.remaining == 0 {
            match state.fixture.take() {
                Some(Ok(fixture)) => {
                    let failed = state.failed;
                    match catch_unwind(AssertUnwindSafe(|| (self.tear_down)(fixture, failed))) {
                        Ok(result) => result.map_err(|e| format!("after the last trial: {e:#}")),
                        Err(panic) => Err(format!(
                            "after the last trial: {}",
                            panic_message(panic.as_ref())
                        )),
                    }
                }
                _ => Ok(()),
            }
        } else {
            Ok(())
        };
        if state.remaining == 0 {
            state.keeper = None;
        }
        match (outcome, torn_down) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(err), Ok(())) | (Ok(()), Err(err)) => Err(err.into()),
            (Err(err), Err(after)) => Err(format!("{err}\n{after}").into()),
        }
    }
}

impl<F: Send + 'static> Expect for Shared<F> {
    fn expect_one(&self) {
        self.lock().remaining += 1;
    }
}

/// A thread that set up a shared fixture and waits, alive, until it is dropped.
struct Keeper {
    /// Dropping it wakes the thread, which then ends.
    _release: std::sync::mpsc::Sender<()>,
}

impl Keeper {
    /// Runs `set_up` on a new thread that outlives this call, and waits for its result.
    fn set_up<F: Send + 'static>(set_up: SetUp<F>) -> (Keeper, std::result::Result<F, String>) {
        let (done, result) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("shared-fixture".into())
            .spawn(move || {
                let fixture = match catch_unwind(AssertUnwindSafe(|| set_up())) {
                    Ok(fixture) => fixture.map_err(|e| format!("{e:#}")),
                    Err(panic) => Err(panic_message(panic.as_ref())),
                };
                let _ = done.send(fixture);
                // Returns once the Keeper (the only sender) is dropped.
                let _ = released.recv();
            });
        let fixture = match spawned {
            Ok(_) => result
                .recv()
                .unwrap_or_else(|_| Err("the set-up thread ended without a result".into())),
            Err(err) => Err(format!("could not start the set-up thread: {err}")),
        };
        (Keeper { _release: release }, fixture)
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(not a string)");
    format!("panicked: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static SET_UP: AtomicUsize = AtomicUsize::new(0);
    static TORN_DOWN: AtomicUsize = AtomicUsize::new(0);

    #[test]
    fn a_shared_fixture_lives_from_the_first_trial_to_the_last() {
        let fixture = Shared::new(
            || {
                SET_UP.fetch_add(1, Ordering::SeqCst);
                Ok(Vec::<&str>::new())
            },
            |seen: Vec<&str>, failed| {
                TORN_DOWN.fetch_add(1, Ordering::SeqCst);
                assert_eq!(seen, ["one", "two", "three"]);
                assert!(failed);
                anyhow::ensure!(seen.len() == 2, "saw {} trials", seen.len());
                Ok(())
            },
        );
        for _ in 0..3 {
            fixture.expect_one();
        }
        fixture
            .run(|seen| {
                seen.push("one");
                Ok(())
            })
            .unwrap();
        let err = fixture
            .run(|seen| {
                seen.push("two");
                panic!("row two broke")
            })
            .unwrap_err();
        assert_eq!(err.message(), Some("panicked: row two broke"));
        assert_eq!(TORN_DOWN.load(Ordering::SeqCst), 0);
        let err = fixture
            .run(|seen| {
                seen.push("three");
                Ok(())
            })
            .unwrap_err();
        assert_eq!(err.message(), Some("after the last trial: saw 3 trials"));
        assert_eq!(SET_UP.load(Ordering::SeqCst), 1);
        assert_eq!(TORN_DOWN.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_trials_panic_is_its_failure_message() {
        let err = caught(|| panic!("the pod never ran: {}", "ImagePullBackOff")).unwrap_err();
        assert_eq!(
            err.message(),
            Some("panicked: the pod never ran: ImagePullBackOff")
        );
        assert!(caught(|| ()).is_ok());
    }

    /// A child that the kernel kills when the thread that forked it ends, as a node's init.
    fn child_dying_with_its_thread() -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("60");
        // SAFETY: prctl only sets a flag on the child, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    fn alive(pid: u32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Neither gone nor a zombie (state Z) waiting to be reaped.
        !stat.is_empty() && !stat.contains(") Z ")
    }

    #[test]
    fn a_shared_fixture_outlives_the_thread_of_its_first_trial() {
        let fixture = Shared::new(
            || Ok(child_dying_with_its_thread()),
            |mut child: std::process::Child, _| {
                child.kill()?;
                child.wait()?;
                Ok(())
            },
        );
        fixture.expect_one();
        fixture.expect_one();
        let first = Arc::clone(&fixture);
        let pid = std::thread::spawn(move || {
            let mut pid = 0;
            first
                .run(|child| {
                    pid = child.id();
                    Ok(())
                })
                .unwrap();
            pid
        })
        .join()
        .unwrap();
        // The first trial's thread has ended; give the kernel's signal time to land.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            alive(pid),
            "the fixture died with the thread of its first trial"
        );
        fixture.run(|_| Ok(())).unwrap();
        assert!(
            !alive(pid),
            "the fixture was not torn down after its last trial"
        );
    }

    #[test]
    fn a_fixture_that_cannot_be_set_up_fails_its_trials() {
        let fixture: Arc<Shared<()>> = Shared::new(|| anyhow::bail!("no node"), |_, _| Ok(()));
        fixture.expect_one();
        let err = fixture.run(|_| Ok(())).unwrap_err();
        assert_eq!(
            err.message(),
            Some("the shared fixture could not be set up: no node")
        );
    }
}
