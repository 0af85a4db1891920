//! Training and inference as market jobs: the committed product is the first one the work
//! computes, the declared multiply-adds are the ones computed, and the result bytes do not depend
//! on who computes the first product.

use ergon_ml::job::{parse_predictions, MlJob, TrainSpec};
use ergon_ml::{Exact, FirstGiven, Mlp, Multiply, TrainConfig, DIGITS_CSV_GZ};

fn spec(epochs: usize) -> TrainSpec {
    TrainSpec { config: TrainConfig { epochs, ..TrainConfig::default() }, holdout: 5 }
}

/// Runs `job` with its committed product computed separately, as a provider does.
fn run_given(job: &MlJob) -> (Vec<u8>, u64) {
    let (a, b) = job.committed_product().unwrap();
    let first = ergon_kernels::matmul(&a, &b).unwrap();
    let mut mul = FirstGiven::new(a, b, first, Exact::default());
    let bytes = job.run(&mut mul).unwrap();
    (bytes, mul.macs())
}

#[test]
fn a_training_job_computes_what_it_committed_to_and_declared() {
    let job = MlJob::train(DIGITS_CSV_GZ, &spec(3).encode()).unwrap();
    let (bytes, macs) = run_given(&job);
    assert_eq!(macs, job.macs(), "declared multiply-adds are the ones computed");
    let mut plain = Exact::default();
    assert_eq!(job.run(&mut plain).unwrap(), bytes, "same bytes with every product computed here");
    let model = Mlp::from_safetensors(&bytes).unwrap();
    let MlJob::Train { data, .. } = &job else { unreachable!() };
    assert_eq!(data.len(), 1797 - 360, "the held-out fifth never reaches training");
    assert_eq!(model.inputs, 64);
}

#[test]
fn an_inference_job_predicts_every_example() {
    let train = MlJob::train(DIGITS_CSV_GZ, &spec(2).encode()).unwrap();
    let model = train.run(&mut Exact::default()).unwrap();
    let job = MlJob::infer(&model, DIGITS_CSV_GZ).unwrap();
    let (bytes, macs) = run_given(&job);
    assert_eq!(macs, job.macs());
    let classes = parse_predictions(&bytes).unwrap();
    assert_eq!(classes.len(), 1797);
    assert!(classes.iter().all(|&c| c < 10));
}

#[test]
fn a_first_product_other_than_the_committed_one_is_refused() {
    let job = MlJob::train(DIGITS_CSV_GZ, &spec(1).encode()).unwrap();
    let (a, b) = job.committed_product().unwrap();
    let mut wrong_a = a.clone();
    wrong_a.as_mut_slice()[0] = wrong_a.as_slice()[0].wrapping_add(1);
    let first = ergon_kernels::matmul(&wrong_a, &b).unwrap();
    let mut mul = FirstGiven::new(wrong_a, b, first, Exact::default());
    assert!(job.run(&mut mul).unwrap_err().to_string().contains("committed"));
}

#[test]
fn training_specs_round_trip_and_bad_ones_get_a_reason() {
    let s = spec(7);
    assert_eq!(TrainSpec::decode(&s.encode()).unwrap(), s);
    let mut zero = spec(0).encode();
    assert!(TrainSpec::decode(&zero).unwrap_err().to_string().contains("epochs"));
    zero.pop();
    assert!(TrainSpec::decode(&zero).is_err());
    assert!(TrainSpec::decode(b"garbage").is_err());
    assert!(MlJob::train(b"not gzip", &spec(1).encode()).is_err());
    assert!(MlJob::infer(b"not a model", DIGITS_CSV_GZ).is_err());
    assert!(parse_predictions(b"1\nx\n").is_err());
}
