//! Proofs of a wrong answer: a provider's signed answer to a validator's signed round that
//! fails the exact check. Anyone can verify one from the two messages alone, so one validator's
//! proof is enough to slash (a timing verdict, which nobody else can check, never slashes).
//!
//! An answer names its round by id, so an honest answer can never be presented against other
//! parameters; the chain checks the signatures, and this module replays the check.

use ergon_types::poai::{Answer, PoaiBody, PoaiMessage, Round};
use ergon_types::{Address, Hash};

use crate::challenge::ComputeChallenge;

/// What a valid proof establishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fraud {
    pub provider: Address,
    pub validator: Address,
    pub round: u64,
    pub part: u32,
    /// The provider's registration the answer was given under.
    pub registered_at: u64,
    /// What is wrong, in words.
    pub why: String,
}

/// Checks that `answer` (signed by a provider) to `round` (signed by a validator) on chain
/// `chain` is wrong. Err: not a proof, and why.
pub fn check_fraud(chain: &Hash, round: &PoaiMessage, answer: &PoaiMessage) -> Result<Fraud, String> {
    let (PoaiBody::Round(r), PoaiBody::Answer(a)) = (&round.body, &answer.body) else {
        return Err("a proof is a round announcement and an answer to it".into());
    };
    round.verify().map_err(|e| format!("the round: {e}"))?;
    answer.verify().map_err(|e| format!("the answer: {e}"))?;
    if r.chain != *chain || a.chain != *chain {
        return Err("for another chain".into());
    }
    if a.round_id != r.id() || a.round != r.round || a.validator != r.validator.address() {
        return Err("the answer is to another round".into());
    }
    let challenge = challenge_of(r, a)?;
    let answered = crate::Answer { commitment: a.commitment, openings: a.openings.clone() };
    match challenge.check(&answered) {
        Ok(()) => Err("the answer is right".into()),
        Err(why) => Ok(Fraud {
            provider: a.provider.address(),
            validator: a.validator,
            round: r.round,
            part: a.part,
            registered_at: a.registered_at,
            why,
        }),
    }
}

/// The part `a` answers, as the provider had to derive it from `r`.
pub fn challenge_of(r: &Round, a: &Answer) -> Result<ComputeChallenge, String> {
    let provider = a.provider.address();
    let Some(&(_, class)) = r.classes.iter().find(|(p, _)| *p == provider) else {
        return Err("the round does not name this provider".into());
    };
    let parts = if r.probe { 1 } else { r.parts };
    if a.part >= parts {
        return Err(format!("part {} of a round of {parts}", a.part));
    }
    Ok(ComputeChallenge::derive(&r.challenge_seed(), &provider, r.round, a.part, class, r.target_ns, r.openings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ergon_types::SecretKey;

    fn key(b: u8) -> SecretKey {
        SecretKey::from_bytes(&[b; 32])
    }

    fn messages(corrupt: bool) -> (PoaiMessage, PoaiMessage, ComputeChallenge) {
        let (validator, provider) = (key(1), key(2));
        let r = Round {
            chain: Hash([9; 32]),
            validator: validator.public(),
            round: 5,
            seed: Hash([3; 32]),
            nonce: [4; 32],
            probe: false,
            target_ns: 1000,
            parts: 3,
            openings: 8,
            classes: vec![(provider.public().address(), 2)],
        };
        let a = Answer {
            chain: r.chain,
            provider: provider.public(),
            validator: validator.public().address(),
            round: 5,
            round_id: r.id(),
            registered_at: 7,
            part: 1,
            commitment: [0; 32],
            openings: vec![],
        };
        let c = challenge_of(&r, &a).unwrap();
        let (ma, mb) = c.matrices();
        let mut product = ergon_kernels::matmul(&ma, &mb).unwrap();
        if corrupt {
            product.as_mut_slice().iter_mut().step_by(3).for_each(|v| *v ^= 1);
        }
        let answered = c.answer(&product);
        let a = Answer { commitment: answered.commitment, openings: answered.openings, ..a };
        (PoaiBody::Round(r).sign(&validator), PoaiBody::Answer(a).sign(&provider), c)
    }

    #[test]
    fn a_wrong_answer_is_proven_and_nothing_else_is() {
        let chain = Hash([9; 32]);
        let (round, wrong, _) = messages(true);
        let fraud = check_fraud(&chain, &round, &wrong).unwrap();
        assert_eq!((fraud.round, fraud.part, fraud.registered_at), (5, 1, 7));
        assert!(fraud.why.contains("is wrong"), "{}", fraud.why);
        // An honest answer is no proof.
        let (round, right, _) = messages(false);
        assert_eq!(check_fraud(&chain, &round, &right).unwrap_err(), "the answer is right");
        // An honest answer presented against other parameters (a forged round of the same
        // number, another class): refused, the answer names the round it answered.
        let PoaiBody::Round(r) = &round.body else { unreachable!() };
        let forged =
            PoaiBody::Round(Round { classes: vec![(key(2).public().address(), 3)], ..r.clone() }).sign(&key(1));
        assert_eq!(check_fraud(&chain, &forged, &right).unwrap_err(), "the answer is to another round");
        // A tampered answer no longer carries the provider's signature.
        let PoaiBody::Answer(a) = &wrong.body else { unreachable!() };
        let tampered =
            PoaiMessage { body: PoaiBody::Answer(Answer { part: 2, ..a.clone() }), signature: wrong.signature };
        assert!(check_fraud(&chain, &round, &tampered).unwrap_err().contains("signature"));
        assert_eq!(check_fraud(&Hash([1; 32]), &round, &wrong).unwrap_err(), "for another chain");
    }
}
