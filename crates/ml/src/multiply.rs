//! Where a model's products are computed. Training and inference call [`Multiply::product`] for
//! every matrix product; the plain kernel and PoUW mining give the same exact result.

use ergon_kernels::{MatI32, MatI8};
use ergon_pouw::{Challenge, Ticket, WorkCommitment};

use crate::MlError;

pub trait Multiply {
    fn product(&mut self, a: &MatI8, b: &MatI8) -> Result<MatI32, MlError>;
    /// Multiply-adds done so far.
    fn macs(&self) -> u64;
}

/// The int8 kernel, nothing else.
#[derive(Default)]
pub struct Exact {
    macs: u64,
}

impl Multiply for Exact {
    fn product(&mut self, a: &MatI8, b: &MatI8) -> Result<MatI32, MlError> {
        self.macs += (a.rows() * a.cols() * b.cols()) as u64;
        ergon_kernels::matmul(a, b).map_err(|e| MlError::Product(e.to_string()))
    }
    fn macs(&self) -> u64 {
        self.macs
    }
}

/// Every product is one nonce of PoUW mining on a challenge whose header is `header` plus the
/// product's index: the exact product is recovered from the mined one, and winning tickets are
/// kept for whoever turns them into blocks.
pub struct Mining {
    pub header: Vec<u8>,
    pub difficulty: u64,
    pub products: u64,
    macs: u64,
    /// (product index, winning ticket) pairs.
    pub winners: Vec<(u64, Ticket)>,
}

impl Mining {
    pub fn new(header: Vec<u8>, difficulty: u64) -> Self {
        Self { header, difficulty, products: 0, macs: 0, winners: vec![] }
    }
}

impl Multiply for Mining {
    fn product(&mut self, a: &MatI8, b: &MatI8) -> Result<MatI32, MlError> {
        let err = |e: ergon_pouw::PouwError| MlError::Product(e.to_string());
        let work = WorkCommitment::compute(a, b).map_err(err)?;
        let mut header = self.header.clone();
        header.extend_from_slice(&self.products.to_le_bytes());
        let challenge = Challenge::new(header, work, self.difficulty).map_err(err)?;
        let mined = ergon_pouw::mine(&challenge, a, b, 0, Default::default()).map_err(err)?;
        self.winners.extend(mined.winners.iter().map(|w| (self.products, *w)));
        self.products += 1;
        self.macs += (a.rows() * a.cols() * b.cols()) as u64;
        Ok(mined.product)
    }
    fn macs(&self) -> u64 {
        self.macs
    }
}

/// A multiplier whose first product was computed elsewhere: a provider mines a job's committed
/// product on the chain's block template, then hands it over here; every later product goes to
/// `then`. Asking first for any other product is an error, so a job cannot drift from what its
/// client committed to.
pub struct FirstGiven<M> {
    first: Option<(MatI8, MatI8, MatI32)>,
    pub then: M,
    macs: u64,
}

impl<M: Multiply> FirstGiven<M> {
    pub fn new(a: MatI8, b: MatI8, product: MatI32, then: M) -> Self {
        Self { first: Some((a, b, product)), then, macs: 0 }
    }
}

impl<M: Multiply> Multiply for FirstGiven<M> {
    fn product(&mut self, a: &MatI8, b: &MatI8) -> Result<MatI32, MlError> {
        match self.first.take() {
            None => self.then.product(a, b),
            Some((fa, fb, p)) if fa == *a && fb == *b => {
                self.macs += (a.rows() * a.cols() * b.cols()) as u64;
                Ok(p)
            }
            Some(_) => Err(MlError::Product("the first product is not the one the job committed to".into())),
        }
    }
    fn macs(&self) -> u64 {
        self.macs + self.then.macs()
    }
}
