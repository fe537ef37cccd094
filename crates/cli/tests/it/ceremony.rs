//! `smpx ceremony …` end to end, running the real binary on a tiny circuit (2 MMR levels):
//! a whole ceremony from `start` to `verify`, tampered transcripts, and refused steps.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

const LEVELS: &str = "2";

fn smpx(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_smpx"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `smpx args…`, which must succeed; returns its stdout.
fn ok(args: &[&str]) -> String {
    let o = smpx(args);
    assert!(o.status.success(), "smpx {args:?} failed:\n{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// Runs `smpx args…`, which must fail; returns stdout and stderr together.
fn fails(args: &[&str]) -> String {
    let o = smpx(args);
    assert!(
        !o.status.success(),
        "smpx {args:?} succeeded:\n{}",
        text(&o)
    );
    assert_ne!(o.status.code(), Some(0));
    text(&o)
}

/// The arguments of `smpx ceremony contribute --in … --out … --name …`.
fn contribute<'a>(input: &'a str, output: &'a str, name: &'a str) -> [&'a str; 8] {
    [
        "ceremony",
        "contribute",
        "--in",
        input,
        "--out",
        output,
        "--name",
        name,
    ]
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("smpx-ceremony-cli")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The finalised transcript of one whole ceremony, and the stdout of its `verify`.
fn finalised() -> &'static (PathBuf, String) {
    static F: OnceLock<(PathBuf, String)> = OnceLock::new();
    F.get_or_init(|| {
        let d = dir("flow");
        let f = |n: &str| d.join(n);
        let out = ok(&["ceremony", "start", "--levels", LEVELS, "--out", s(&f("0"))]);
        assert!(out.contains("powers of tau 2^"), "{out}");

        let a = ok(&contribute(s(&f("0")), s(&f("1")), "alice"));
        assert!(a.contains("contribution hash: "), "{a}");
        let alice = hash_line(&a);
        let b = ok(&contribute(s(&f("1")), s(&f("2")), "bob"));
        let bob = hash_line(&b);
        ok(&[
            "ceremony",
            "begin-phase2",
            "--levels",
            LEVELS,
            "--in",
            s(&f("2")),
            "--out",
            s(&f("3")),
        ]);
        // Contributing in place (same input and output file) works too.
        std::fs::copy(f("3"), f("4")).unwrap();
        let c = ok(&contribute(s(&f("4")), s(&f("4")), "carol"));
        assert!(c.contains("phase 2 #0"), "{c}");
        let carol = hash_line(&c);
        let info = ok(&["ceremony", "info", s(&f("4"))]);
        assert!(info.contains("phase 2 open"), "{info}");
        let fin = ok(&[
            "ceremony",
            "finalize",
            "--beacon",
            "0x00000000000000000001a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7",
            "--iterations",
            "4",
            "--in",
            s(&f("4")),
            "--out",
            s(&f("final")),
        ]);
        assert!(fin.contains("finalised"), "{fin}");

        let vk = f("vk.bin");
        let v = ok(&[
            "ceremony",
            "verify",
            "--levels",
            LEVELS,
            s(&f("final")),
            "--verifying-key-out",
            s(&vk),
        ]);
        for (hash, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
            let line = v
                .lines()
                .find(|l| l.contains(hash.as_str()))
                .unwrap_or_else(|| {
                    panic!("{name}'s hash {hash} is not in the verify output:\n{v}")
                });
            assert!(line.contains(name), "{line}");
        }
        assert!(v.contains("beacon 00000000000000000001a2b3"), "{v}");
        // The printed SHA-256 is that of the key written, which smpx-zk accepts.
        let bytes = std::fs::read(&vk).unwrap();
        let key = smpx_zk::VerifyingKey::from_bytes(&bytes).unwrap();
        assert_eq!(key.levels(), 2);
        let sha = hex::encode(Sha256::digest(&bytes));
        assert!(v.contains(&format!("verifying key sha256: {sha}")), "{v}");

        let info = ok(&["ceremony", "info", s(&f("final"))]);
        assert!(info.contains("finalised"), "{info}");
        assert!(info.contains("bob"), "{info}");
        (f("final"), v)
    })
}

/// The hash printed by `contribute`.
fn hash_line(out: &str) -> String {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("contribution hash: "))
        .unwrap_or_else(|| panic!("no hash in:\n{out}"));
    assert_eq!(line.len(), 64, "{line}");
    line.to_owned()
}

#[test]
fn ceremony_cli_whole_ceremony_verifies() {
    let (_, verify_out) = finalised();
    assert!(verify_out.contains("ceremony verified"), "{verify_out}");
}

#[test]
fn ceremony_cli_tampered_transcript_fails_verify() {
    let (file, _) = finalised();
    let bytes = std::fs::read(file).unwrap();
    let d = dir("tampered");

    // The last bytes of the file are the final contribution's recorded hash.
    let mut last_hash = bytes.clone();
    let n = last_hash.len();
    last_hash[n - 5] ^= 0x01;
    // A changed letter in a contributor's recorded name.
    let mut renamed = bytes.clone();
    let at = renamed
        .windows(5)
        .position(|w| w == b"carol")
        .expect("carol's name in the file");
    renamed[at] ^= 0x20; // "Carol"
    for (name, data) in [("hash", last_hash), ("name", renamed)] {
        let p = d.join(name);
        std::fs::write(&p, &data).unwrap();
        let out = fails(&["ceremony", "verify", "--levels", LEVELS, s(&p)]);
        assert!(out.contains("ceremony.hash_mismatch"), "{name}: {out}");
        assert!(out.contains("phase 2 contribution #"), "{name}: {out}");
    }

    // A flipped byte inside a group element: refused either while decoding or verifying,
    // with a ceremony error code.
    let mut point = bytes.clone();
    let mid = point.len() / 2;
    point[mid] ^= 0x40;
    let p = d.join("point");
    std::fs::write(&p, &point).unwrap();
    let out = fails(&["ceremony", "verify", "--levels", LEVELS, s(&p)]);
    assert!(
        out.contains("error: ") && out.contains("ceremony."),
        "{out}"
    );

    // For another circuit.
    let out = fails(&["ceremony", "verify", "--levels", "3", s(file)]);
    assert!(out.contains("ceremony.circuit_mismatch"), "{out}");
}

#[test]
fn ceremony_cli_refuses_contributions_after_finalisation() {
    let (file, _) = finalised();
    let out_file = dir("refused").join("out");
    let out = fails(&contribute(s(file), s(&out_file), "late"));
    assert!(out.contains("ceremony.wrong_state"), "{out}");
    assert!(out.contains("finalised"), "{out}");
    assert!(!out_file.exists());
    // A second beacon is refused too.
    let out = fails(&[
        "ceremony",
        "finalize",
        "--beacon",
        "abcd",
        "--iterations",
        "0",
        "--in",
        s(file),
        "--out",
        s(&out_file),
    ]);
    assert!(out.contains("ceremony.wrong_state"), "{out}");
}

#[test]
fn ceremony_cli_missing_or_garbage_files_are_clear_errors() {
    let d = dir("garbage");
    let missing = d.join("does-not-exist");
    let out = fails(&["ceremony", "info", s(&missing)]);
    assert!(out.contains("cannot open the transcript"), "{out}");

    let garbage = d.join("garbage");
    std::fs::write(&garbage, b"this is not a transcript at all").unwrap();
    for args in [
        vec!["ceremony", "info", s(&garbage)],
        vec!["ceremony", "verify", "--levels", LEVELS, s(&garbage)],
        vec![
            "ceremony",
            "contribute",
            "--in",
            s(&garbage),
            "--out",
            s(&missing),
        ],
    ] {
        let out = fails(&args);
        assert!(out.contains("ceremony.encoding"), "{args:?}: {out}");
        assert!(!out.contains("panicked"), "{out}");
    }

    // Levels the circuit does not support, and a beacon that is not hex.
    let out = fails(&[
        "ceremony",
        "start",
        "--levels",
        "40",
        "--out",
        s(&d.join("x")),
    ]);
    assert!(out.contains("unsupported MMR levels 40"), "{out}");
    let start = d.join("start");
    ok(&["ceremony", "start", "--levels", LEVELS, "--out", s(&start)]);
    let out = fails(&[
        "ceremony",
        "finalize",
        "--beacon",
        "not hex",
        "--iterations",
        "0",
        "--in",
        s(&start),
        "--out",
        s(&d.join("y")),
    ]);
    assert!(out.contains("ceremony.invalid_beacon"), "{out}");
    // An unfinished ceremony does not verify.
    let out = fails(&["ceremony", "verify", "--levels", LEVELS, s(&start)]);
    assert!(out.contains("ceremony.not_finalized"), "{out}");
}
