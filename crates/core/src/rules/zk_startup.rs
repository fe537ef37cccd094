//! Rule: does a coordinator serve v0.2 redemption when it starts? (DESIGN.md §2 "v0.2 —
//! zero-knowledge redemption": the proving keys come from a multi-party ceremony whose
//! transcript anyone can verify.)
//!
//! Without a ceremony transcript the coordinator serves v0.1 only — and says so when the
//! network's parameters ask for v0.2, since its operator expected otherwise. With one, the
//! transcript is verified in full before serving; one that does not verify stops the start
//! (that is the caller's error path, not a decision).

/// What the coordinator does about v0.2 at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZkStartup {
    /// Serve v0.1 only; `warn` when the network's parameters list v0.2.
    V1Only { warn: bool },
    /// Verify the transcript and serve v0.2 with its keys.
    VerifyTranscript,
}

/// Decides from whether the parameters list v0.2 and whether a transcript exists.
pub fn decide(wants_v2: bool, transcript_exists: bool) -> ZkStartup {
    if transcript_exists {
        ZkStartup::VerifyTranscript
    } else {
        ZkStartup::V1Only { warn: wants_v2 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_wanted_but_no_transcript_warns_and_serves_v1() {
        assert_eq!(decide(true, false), ZkStartup::V1Only { warn: true });
        assert_eq!(decide(false, false), ZkStartup::V1Only { warn: false });
    }

    #[test]
    fn a_transcript_is_always_verified() {
        // Even where the parameters do not list v0.2: a bad transcript must not go unseen.
        assert_eq!(decide(true, true), ZkStartup::VerifyTranscript);
        assert_eq!(decide(false, true), ZkStartup::VerifyTranscript);
    }
}
