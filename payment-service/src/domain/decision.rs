//! The simulated card network. It is deterministic on purpose, so that tests and users can trigger both outcomes:
//! an amount strictly above the configured limit (`PAYMENT_DECLINE_ABOVE_CENTS`) is DECLINED, anything else
//! SUCCEEDS.
use super::{Money, money::DisplayCents};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Decline { reason: String },
}

#[derive(Debug, Clone, Copy)]
pub struct DecisionRule {
    decline_above_cents: i64,
}

impl DecisionRule {
    pub fn new(decline_above_cents: i64) -> Self {
        Self { decline_above_cents }
    }

    pub fn decide(&self, amount: Money) -> Decision {
        if amount.cents() > self.decline_above_cents {
            let limit = DisplayCents(self.decline_above_cents, amount.currency());
            Decision::Decline { reason: format!("amount {amount} exceeds the limit of {limit} per payment") }
        } else {
            Decision::Approve
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_up_to_the_limit_are_approved_and_above_it_declined_with_the_limit_named() {
        let rule = DecisionRule::new(500_000);
        assert_eq!(rule.decide(Money::parse(500_000, "EUR").unwrap()), Decision::Approve);
        let Decision::Decline { reason } = rule.decide(Money::parse(500_001, "EUR").unwrap()) else {
            panic!("an amount above the limit must be declined");
        };
        assert_eq!(reason, "amount 5000.01 EUR exceeds the limit of 5000.00 EUR per payment");
    }
}
