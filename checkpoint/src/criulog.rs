//! What went wrong, from CRIU's dump.log or restore.log: its error lines, without the ones
//! CRIU logs on every run here, and what the user can do about the known causes, in the
//! words of containerd's options.

/// Error lines CRIU writes on successful runs too (probing, environment), never the cause.
const NOT_THE_CAUSE: &[&str] = &[
    "Unable to create tun",
    "Can't setup RLIMIT_NOFILE",
    "Dumping FAILED",
    "Restoring FAILED",
    "Dump files (pid:",
];

/// CRIU's words for a process it could not seize (uninterruptible sleep): transient.
const UNSEIZABLE: &str = "Unseizable non-zombie";

/// Known causes: a fragment of CRIU's error line, and what to do.
const ADVICE: &[(&str, &str)] = &[
    (
        "Connected TCP socket",
        "the container holds established TCP connections: checkpoint with open_tcp \
         (containerd.runc.v1.CheckpointOptions; runc's --tcp-established), or close them first",
    ),
    (
        "External socket",
        "the container holds a unix socket connected outside it: checkpoint with \
         external_unix_sockets (runc's --ext-unix-sk), or close it first",
    ),
    (
        "to dump the file lock",
        "the container holds file locks: checkpoint with file_locks (runc's --file-locks)",
    ),
    (
        UNSEIZABLE,
        "a process of the container was in uninterruptible sleep (state D) while CRIU froze \
         the container (under heavy I/O or load); try again",
    ),
    (
        "Can't get rlimit",
        "CRIU may not read the resource limits of a process running as another user: the \
         capability bounding set of containerd (and so of CRIU) lacks CAP_SYS_RESOURCE; give \
         containerd CAP_SYS_RESOURCE, or run the container in a user namespace",
    ),
    (
        "not supported",
        "the container uses something this CRIU or kernel cannot checkpoint (see the errors)",
    ),
];

/// Whether the log shows a failure that another attempt may not meet: a process in
/// uninterruptible sleep when CRIU seized the tree.
pub fn transient(log: &str) -> bool {
    log.contains(UNSEIZABLE)
}

/// The error lines of a CRIU log that may be the cause, text only (no timestamp and
/// source location), in order; at most `max`.
pub fn errors(log: &str, max: usize) -> Vec<String> {
    log.lines()
        .filter_map(|line| line.split_once("Error (").map(|(_, rest)| rest))
        .map(|rest| match rest.split_once("): ") {
            Some((_, text)) => text.trim().to_string(),
            None => rest.trim().to_string(),
        })
        .filter(|text| !NOT_THE_CAUSE.iter().any(|n| text.contains(n)))
        .take(max)
        .collect()
}

/// What to do about `errors`, for the causes we know.
pub fn advice(errors: &[String]) -> Option<&'static str> {
    ADVICE
        .iter()
        .find(|(fragment, _)| errors.iter().any(|e| e.contains(fragment)))
        .map(|(_, advice)| *advice)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relevant lines of a real dump.log (CRIU 4.2.1, a container with a TCP connection
    /// on its loopback, checkpointed without --tcp-established).
    const TCP_DUMP_LOG: &str = "(00.004407) Error (criu/tun.c:85): tun: Unable to create tun: No such file or directory
(00.039353) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.152000) Dumping path for 3 fd via self 12 [/]
(00.152017) Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using --tcp-established option.
(00.152022) Error (criu/cr-dump.c:1545): Dump files (pid: 84) failed with -1
(00.231148) Error (criu/cr-dump.c:1975): Dumping FAILED.
";

    #[test]
    fn the_cause_is_found_and_explained() {
        let found = errors(TCP_DUMP_LOG, 5);
        assert_eq!(
            found,
            ["inet: Connected TCP socket, consider using --tcp-established option."]
        );
        assert!(advice(&found).unwrap().contains("open_tcp"));
    }

    #[test]
    fn a_process_in_state_d_is_transient() {
        let log = "(10.0) Error (compel/src/lib/infect.c:160): Unseizable non-zombie 423 found, state D, err -1/4\n";
        assert!(transient(log));
        assert!(advice(&errors(log, 5)).unwrap().contains("try again"));
        assert!(!transient(TCP_DUMP_LOG));
    }

    /// A container running as uid 1000, dumped where CRIU lacks CAP_SYS_RESOURCE.
    #[test]
    fn rlimits_of_another_user_are_explained() {
        let log = "(00.039353) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.041000) Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted
(00.041010) Error (criu/cr-dump.c:1584): Dump core (pid: 635) failed with -1
";
        let found = errors(log, 5);
        assert!(
            advice(&found).unwrap().contains("CAP_SYS_RESOURCE"),
            "{found:?}"
        );
    }

    #[test]
    fn unknown_causes_get_no_advice() {
        let found = errors("(0.1) Error (x.c:1): something new\n", 5);
        assert_eq!(found, ["something new"]);
        assert_eq!(advice(&found), None);
        assert!(errors("no errors here\n", 5).is_empty());
    }
}
