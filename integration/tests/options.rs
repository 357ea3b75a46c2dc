//! Runtime options reach the revive shim on every flavour: a CRI handler's `BinaryName` and
//! `Root`, and `ctr task checkpoint`'s image and work paths (see the `options` module).

use revive_integration::{Flavour, on_node, options};

fn options_reach_the_shim(flavour: Flavour) {
    let seen = on_node(
        flavour,
        "options",
        "runtime options",
        options::runtime_options_reach_the_shim,
    );
    for line in &seen {
        eprintln!("  {line}");
    }
}

revive_integration::e2e_main! {
    runtime_options_reach_the_shim_latest => options_reach_the_shim(Flavour::Latest),
    runtime_options_reach_the_shim_lts => options_reach_the_shim(Flavour::Lts),
    runtime_options_reach_the_shim_stable => options_reach_the_shim(Flavour::Stable),
}
