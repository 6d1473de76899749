//! Comparing two training steps' results: the loss, the logits and every parameter's
//! gradient, to a relative tolerance. Shared by the test crates that check a step's variants
//! against a reference (`#[path = "../common/compare.rs"] mod compare;`).

/// |a - b| / |b| over a whole tensor.
pub fn relative(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (diff / norm.max(1e-300)).sqrt()
}

/// What two steps are compared on.
pub struct Outcome<'a> {
    pub loss: f64,
    pub logits: &'a [f32],
    /// Every parameter's gradient by name; None where the objective does not reach it.
    pub grads: &'a [(String, Option<Vec<f32>>)],
}

/// `got` agrees with `want` to `tol` relative: the loss, the logits, and every gradient (and
/// the same parameters have one).
pub fn assert_close(what: &str, got: Outcome, want: Outcome, tol: f64) {
    assert!(
        (got.loss - want.loss).abs() <= tol * want.loss.abs(),
        "{what}: loss {} vs {}",
        got.loss,
        want.loss
    );
    assert!(relative(got.logits, want.logits) <= tol, "{what}: logits");
    assert!(
        want.grads.iter().any(|(_, g)| g.is_some()),
        "{what}: no gradient"
    );
    for ((name, g), (_, w)) in got.grads.iter().zip(want.grads) {
        match (g, w) {
            (Some(g), Some(w)) => {
                let r = relative(g, w);
                assert!(r <= tol, "{what}: {name} differs by {r:.2e} (relative)");
            }
            (None, None) => {}
            _ => panic!("{what}: {name} has a gradient in one step only"),
        }
    }
}
