//! Wald's sequential probability ratio test on log-time observations.
//!
//! An observation is x = ln(t / t_claimed): how much slower than its claim a provider answered
//! (interference only slows a machine, so an honest x is ≥ 0 up to noise). H0 "as claimed":
//! x ~ N(0, σ²); H1 "the next lower class": x ~ N(g, σ²), g = ln(class ratio). Each observation
//! adds (g/σ²)(x − g/2) to the log-likelihood ratio; the test accepts the claim below
//! ln(β/(1−α)) and rejects it above ln((1−β)/α) (α: wrongly rejecting an honest claim; β:
//! wrongly accepting a lower class).

/// What the test has concluded so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SprtDecision {
    Continue,
    AcceptClaim,
    RejectClaim,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sprt {
    llr: f64,
    pub samples: u32,
    upper: f64,
    lower: f64,
    gap: f64,
    sigma: f64,
}

impl Sprt {
    pub fn new(alpha: f64, beta: f64, class_ratio: f64, sigma: f64) -> Self {
        Sprt {
            llr: 0.0,
            samples: 0,
            upper: ((1.0 - beta) / alpha).ln(),
            lower: (beta / (1.0 - alpha)).ln(),
            gap: class_ratio.ln(),
            sigma,
        }
    }

    /// The log-likelihood ratio so far (positive: evidence of the lower class).
    pub fn llr(&self) -> f64 {
        self.llr
    }

    /// Adds one observation; after a decision the test starts afresh.
    pub fn observe(&mut self, x: f64) -> SprtDecision {
        // A NaN (no time measured) counts as nothing.
        if x.is_finite() {
            self.llr += self.gap / (self.sigma * self.sigma) * (x - self.gap / 2.0);
            self.samples += 1;
        }
        let decision = if self.llr >= self.upper {
            SprtDecision::RejectClaim
        } else if self.llr <= self.lower {
            SprtDecision::AcceptClaim
        } else {
            SprtDecision::Continue
        };
        if decision != SprtDecision::Continue {
            (self.llr, self.samples) = (0.0, 0);
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_follow_alpha_and_beta_and_decisions_go_the_right_way() {
        let s = Sprt::new(1e-6, 1e-3, 1.25, 0.2);
        assert!((s.upper - 13.8155).abs() < 1e-3 && (s.lower + 6.9078).abs() < 1e-3);
        let mut honest = s.clone();
        let mut n = 0;
        while honest.observe(0.0) == SprtDecision::Continue {
            n += 1;
        }
        // Each exact-as-claimed observation adds −g²/(2σ²) ≈ −0.62: 12 of them pass −6.9.
        assert_eq!(n, 11);
        let mut slow = s.clone();
        let mut decision = SprtDecision::Continue;
        for _ in 0..100 {
            decision = slow.observe(1.25f64.ln());
            if decision != SprtDecision::Continue {
                break;
            }
        }
        assert_eq!(decision, SprtDecision::RejectClaim);
        assert_eq!(slow.samples, 0, "restarted after the decision");
        let mut absurd = s.clone();
        assert_eq!(absurd.observe(40.0), SprtDecision::RejectClaim, "a claim off by e^40 is refused at once");
        assert_eq!(s.clone().observe(f64::NAN), SprtDecision::Continue);
    }
}
