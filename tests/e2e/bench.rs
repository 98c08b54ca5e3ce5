//! The bench specs (examples/bench/w1.yaml … w4.yaml) on orders-200k give the
//! CHECKSUM lines of bench/README (the shared benchmark's reference results,
//! which reference.py and Apache Flink both produce) at parallelism 1 and 2.

use crate::support::{self, assert_ok};

const EXPECTED: [(&str, &str); 4] = [
    (
        "W1",
        "CHECKSUM W1 results=112008 sum_usd_cents=3622360232 spec_sum=3622472240 hash=70bb42d7f8f10814",
    ),
    (
        "W2",
        "CHECKSUM W2 results=22061 sum_count=199818 sum_cents=4989540265 sum_ws=21950058283 late=182 hash=d19d85e6f8f3e0e4",
    ),
    (
        "W3",
        "CHECKSUM W3 results=104873 sum_count=1999759 sum_cents=49933735896 sum_ws=104317225459 late=0 hash=bd43661678ab6f89",
    ),
    (
        "W4",
        "CHECKSUM W4 results=17696 sum_count=199931 sum_len=880555713 late=69 hash=e453e4bb26d5bf9e",
    ),
];

fn check(workload: &str, expected: &str) {
    let input = support::orders_200k();
    let spec = support::repo().join(format!("examples/bench/{}.yaml", workload.to_lowercase()));
    for parallelism in ["1", "2"] {
        let dir = support::temp_dir();
        let out = dir.path().join("out.jsonl");
        let late = dir.path().join("late.jsonl");
        let o = support::run(
            &spec,
            &[
                ("INPUT", input.to_str().unwrap()),
                ("OUTPUT", out.to_str().unwrap()),
                ("LATE_OUTPUT", late.to_str().unwrap()),
                ("PARALLELISM", parallelism),
            ],
        );
        assert_ok(&o);
        let late = (workload != "W1").then_some(late.as_path());
        let got = support::checksum(workload, &out, late);
        assert_eq!(got, expected, "{workload} at parallelism {parallelism}");
    }
}

#[test]
fn w1_reproduces_the_reference_checksum() {
    check(EXPECTED[0].0, EXPECTED[0].1);
}

#[test]
fn w2_reproduces_the_reference_checksum() {
    check(EXPECTED[1].0, EXPECTED[1].1);
}

#[test]
fn w3_reproduces_the_reference_checksum() {
    check(EXPECTED[2].0, EXPECTED[2].1);
}

#[test]
fn w4_reproduces_the_reference_checksum() {
    check(EXPECTED[3].0, EXPECTED[3].1);
}
