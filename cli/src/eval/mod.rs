//! Evaluation as in the paper. Few-shot classifier: [`logreg`] fits the multinomial logistic
//! regression (with [`lbfgs`]); [`confidence`] reports a mean with its 95% interval using
//! [`student_t`].
pub mod confidence;
pub mod lbfgs;
pub mod logreg;
pub mod student_t;
