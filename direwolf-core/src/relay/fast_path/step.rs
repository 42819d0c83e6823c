//! What the fast path does next with one flow, from its counters: the decisions of
//! [`super::Worker`], apart from any `nft` call.

/// Where a flow is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Its client datagrams go through the kernel; Wolf's answers still reach the relay.
    ClientSide,
    /// Both directions go through the kernel.
    Kernel,
}

/// The next step for a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing to do yet.
    Wait,
    /// A client datagram went through the kernel and past every firewall: Wolf's answers can
    /// follow it (the conntrack entry they need exists).
    HandOver,
    /// Client datagrams entered the kernel path but none came out of it: another firewall (a
    /// `FORWARD` policy of drop, say) discards them. The flow goes back to the relay.
    GiveBack,
}

/// Client datagrams that must have entered a flow, none of them forwarded, before the flow is
/// given back: two pings' worth, so a datagram counted on the way in but not yet on the way
/// through is no reason.
const ENTERED_WITHOUT_FORWARD: u64 = 2;

/// The next step for a flow at `stage` whose client datagrams `entered` the kernel path and were
/// `forwarded` past the host's firewalls.
pub(crate) fn next(stage: Stage, entered: u64, forwarded: u64) -> Step {
    match stage {
        Stage::Kernel => Step::Wait,
        Stage::ClientSide if forwarded > 0 => Step::HandOver,
        Stage::ClientSide if entered >= ENTERED_WITHOUT_FORWARD => Step::GiveBack,
        Stage::ClientSide => Step::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_datagram_hands_the_answers_over() {
        assert_eq!(next(Stage::ClientSide, 0, 0), Step::Wait);
        assert_eq!(next(Stage::ClientSide, 1, 0), Step::Wait, "one may be in flight");
        assert_eq!(next(Stage::ClientSide, 1, 1), Step::HandOver);
        assert_eq!(next(Stage::ClientSide, 5, 1), Step::HandOver);
    }

    #[test]
    fn datagrams_that_never_come_through_give_the_flow_back() {
        assert_eq!(next(Stage::ClientSide, 2, 0), Step::GiveBack);
        assert_eq!(next(Stage::Kernel, 9, 0), Step::Wait, "a carried flow stays");
    }
}
