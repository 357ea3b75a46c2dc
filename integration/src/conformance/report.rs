//! The report: test by test, one column per runtime, with the reason for every failure and
//! skip, and the differences listed first.

use std::time::Duration;

use super::*;

/// A whole conformance run.
#[derive(Debug, Clone)]
pub struct Report {
    pub date: String,
    pub revive: String,
    pub command: String,
    pub timeout: Duration,
    pub flavours: Vec<FlavourRun>,
    pub seconds: f64,
}

fn short(runtime: &str) -> String {
    runtime
        .strip_prefix("io.containerd.")
        .unwrap_or(runtime)
        .to_string()
}

fn cell(result: Option<&TestResult>) -> String {
    match result {
        Some(r) if r.outcome == Outcome::Pass => "pass".into(),
        Some(r) => r.outcome.to_string(),
        None => "-".into(),
    }
}

/// The report as markdown.
pub fn render_markdown(report: &Report) -> String {
    let mut out = String::from("# containerd `integration/client` conformance\n\n");
    out.push_str(&format!(
        "{}; revive {}; {} per test; {:.0} s in all.\n\nReproduce: `{}`\n\n",
        report.date,
        report.revive,
        humantime(report.timeout),
        report.seconds,
        report.command
    ));
    out.push_str(
        "Each test runs alone (`-test.run '^Name$'`) against its own containerd (as upstream \
         CI does), with `TEST_RUNTIME` set to the runtime of the column, CRIU available and no \
         `-no-criu`, in a fresh pid and mount namespace of the node. Images come from a \
         registry in the node (see Images below). Full output of every test: the log \
         directory named at the end.\n\n",
    );
    for run in &report.flavours {
        out.push_str(&render_flavour(run));
    }
    out.push_str(
        "## Images\n\nServed by docker-registry on 127.0.0.1:443 in the node (TLS from a \
                   test CA the node trusts; `/etc/hosts` maps ",
    );
    out.push_str(&REGISTRY_HOSTS.join(", "));
    out.push_str(" to 127.0.0.1), built locally, pushed with skopeo:\n\n");
    let rows: Vec<Vec<String>> = report
        .flavours
        .iter()
        .find(|f| !f.images.is_empty())
        .map(|f| {
            f.images
                .iter()
                .map(|(n, w)| vec![n.clone(), w.clone()])
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&crate::bench::markdown_table(
        &["name".into(), "content".into()],
        &rows,
    ));
    out.push_str(IMAGE_NOTES);
    out.push_str("\nNot served:\n\n");
    let rows: Vec<Vec<String>> = NOT_SERVED
        .iter()
        .map(|n| vec![n.image.to_string(), n.tests.join(", "), n.why.to_string()])
        .collect();
    out.push_str(&crate::bench::markdown_table(
        &["name".into(), "tests".into(), "why".into()],
        &rows,
    ));
    out
}

fn humantime(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

/// A few lines for the terminal: counts per runtime, and the tests whose outcomes differ.
pub fn summary(run: &FlavourRun) -> String {
    let mut out = format!("{} node:", run.flavour);
    if let Some(err) = &run.error {
        out.push_str(&format!(" did not complete: {}", shorten(err, 200)));
    }
    for r in &run.runtimes {
        let counts: Vec<String> = run
            .counts(r)
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        out.push_str(&format!("\n  {}: {}", short(r), counts.join(", ")));
    }
    for t in run.differences() {
        let cells: Vec<String> = run
            .runtimes
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    short(r),
                    run.outcome(&t, r)
                        .map(|o| o.to_string())
                        .unwrap_or_default()
                )
            })
            .collect();
        out.push_str(&format!("\n  differs: {t} ({})", cells.join(", ")));
    }
    out
}

/// One flavour's section: counts, differences, the full table.
pub fn render_flavour(run: &FlavourRun) -> String {
    let mut out = format!("## {} node\n\n", run.flavour);
    if !run.versions.is_empty() {
        out.push_str(&format!("{}.", run.versions));
    }
    if let Some(suite) = &run.suite {
        out.push_str(&format!(
            " Tests from {}, built with {} ({} tests",
            suite.source,
            suite.go,
            suite.tests.len()
        ));
        if run.not_selected > 0 {
            out.push_str(&format!(
                ", {} of them not selected for this run",
                run.not_selected
            ));
        }
        out.push_str(").");
    }
    if run.registry_seconds > 0.0 {
        out.push_str(&format!(
            " Registry up with the images in {:.0} s.",
            run.registry_seconds
        ));
    }
    out.push_str("\n\n");
    if let Some(err) = &run.error {
        out.push_str(&format!(
            "**The run did not complete:** {}\n\n",
            shorten(err, 400)
        ));
    }
    if run.results.is_empty() {
        return out;
    }
    // Counts.
    let kinds = ["pass", "FAIL", "skip", "TIMEOUT", "ERROR"];
    let mut header = vec![String::new()];
    header.extend(run.runtimes.iter().map(|r| format!("`{}`", short(r))));
    let mut rows = Vec::new();
    for kind in kinds {
        let mut row = vec![kind.to_string()];
        for r in &run.runtimes {
            row.push(run.counts(r).get(kind).copied().unwrap_or(0).to_string());
        }
        rows.push(row);
    }
    let mut row = vec!["wall time".to_string()];
    row.extend(run.runtime_seconds.iter().map(|s| format!("{s:.0} s")));
    rows.push(row);
    out.push_str(&crate::bench::markdown_table(&header, &rows));
    out.push('\n');
    // Differences.
    let diffs = run.differences();
    if run.runtimes.len() > 1 {
        if diffs.is_empty() {
            out.push_str("No differences between the runtimes.\n\n");
        } else {
            out.push_str(&format!("Differences ({}):\n\n", diffs.len()));
            out.push_str(&result_table(run, &diffs));
            out.push('\n');
        }
    }
    // Skips the tests make themselves for runtimes other than the Go shim's.
    let own_skips: Vec<String> = run
        .results
        .iter()
        .filter_map(|(t, rs)| rs.iter().find_map(|r| runtime_skip(t, r)))
        .map(|s| format!("- {}: {}\n", s.test, s.why))
        .collect();
    if !own_skips.is_empty() {
        out.push_str("Skipped by the test itself for runtimes other than the Go shim's:\n\n");
        out.push_str(&own_skips.concat());
        out.push('\n');
    }
    // Everything.
    out.push_str("<details><summary>Every test</summary>\n\n");
    let all: Vec<String> = run.results.keys().cloned().collect();
    out.push_str(&result_table(run, &all));
    out.push_str("\n</details>\n\n");
    out
}

fn result_table(run: &FlavourRun, tests: &[String]) -> String {
    let mut header = vec!["test".to_string()];
    header.extend(run.runtimes.iter().map(|r| format!("`{}`", short(r))));
    header.push("reason (failures and skips)".into());
    let rows: Vec<Vec<String>> = tests
        .iter()
        .map(|t| {
            let results = run.results.get(t);
            let mut row = vec![t.clone()];
            for i in 0..run.runtimes.len() {
                row.push(cell(results.and_then(|rs| rs.get(i))));
            }
            // One reason per distinct message, labelled by runtime when they differ.
            let mut reasons: Vec<(String, String)> = Vec::new();
            for r in results.into_iter().flatten() {
                if r.reason.is_empty() {
                    continue;
                }
                match reasons.iter_mut().find(|(_, why)| *why == r.reason) {
                    Some((who, _)) => {
                        who.push_str(&format!(", {}", short(&r.runtime)));
                    }
                    None => reasons.push((short(&r.runtime), r.reason.clone())),
                }
            }
            let text = if reasons.len() == 1 {
                shorten(&reasons[0].1, 200)
            } else {
                reasons
                    .iter()
                    .map(|(who, why)| format!("{who}: {}", shorten(why, 140)))
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            match not_served(t) {
                Some(n) => row.push(format!("image not served ({}): {text}", n.image)),
                None => row.push(text),
            }
            row
        })
        .collect();
    crate::bench::markdown_table(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regressions_spare_only_the_tests_own_runtime_skips() {
        let result = |test: &str, runtime: &str, outcome: Outcome, reason: &str| TestResult {
            test: test.into(),
            runtime: runtime.into(),
            outcome,
            reason: reason.into(),
            seconds: 0.0,
            log: None,
        };
        let mut run = FlavourRun {
            runtimes: vec![RUNC_V2.into(), REVIVE_V2.into()],
            ..Default::default()
        };
        for (test, outcome, reason) in [
            (
                "TestIssue10589",
                Outcome::Skip,
                "test requires io.containerd.runc.v2",
            ),
            (
                "TestOther",
                Outcome::Skip,
                "test requires io.containerd.runc.v2",
            ),
            ("TestFails", Outcome::Fail, "boom"),
            ("TestFine", Outcome::Pass, ""),
        ] {
            run.results.insert(
                test.into(),
                vec![
                    result(test, RUNC_V2, Outcome::Pass, ""),
                    result(test, REVIVE_V2, outcome, reason),
                ],
            );
        }
        assert_eq!(
            run.regressions(RUNC_V2, REVIVE_V2),
            ["TestFails", "TestOther"]
        );
        assert!(render_flavour(&run).contains("Skipped by the test itself"));
    }
}
