//! running <-> stopped; running|stopped -> failed (reported by the platform);
//! anything but destroyed -> destroyed.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Start,
    Stop,
    Destroy,
}

/// The next state, or `None` when the transition is impossible.
pub fn next(state: &str, t: Transition) -> Option<&'static str> {
    match (state, t) {
        ("stopped" | "failed", Transition::Start) => Some("running"),
        ("running", Transition::Stop) => Some("stopped"),
        ("running" | "stopped" | "failed", Transition::Destroy) => Some("destroyed"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_impossible_transitions() {
        assert_eq!(next("running", Transition::Start), None);
        assert_eq!(next("stopped", Transition::Stop), None);
        assert_eq!(next("destroyed", Transition::Start), None);
        assert_eq!(next("destroyed", Transition::Destroy), None);
        assert_eq!(next("failed", Transition::Start), Some("running"));
    }
}
