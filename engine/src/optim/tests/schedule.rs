use super::assert_close;
use crate::optim::WarmupCosine;

const SCHEDULE: WarmupCosine = WarmupCosine {
    base_lr: 1e-3,
    warmup_steps: 10,
    total_steps: 110,
    min_lr: 1e-6,
};

#[test]
fn warm_up_is_linear_from_one_step_to_base() {
    assert_close(&[SCHEDULE.lr_at(0)], &[1e-4], 1e-15);
    assert_close(&[SCHEDULE.lr_at(4)], &[5e-4], 1e-15);
    assert_close(&[SCHEDULE.lr_at(9)], &[1e-3], 1e-15);
}

#[test]
fn cosine_runs_from_base_to_min() {
    // 100 cosine steps: start, a quarter, the middle, the last, then clamped.
    assert_close(&[SCHEDULE.lr_at(10)], &[1e-3], 1e-15);
    let quarter = 1e-6 + (1e-3 - 1e-6) * (1.0 + (std::f64::consts::PI / 4.0).cos()) / 2.0;
    assert_close(&[SCHEDULE.lr_at(35)], &[quarter], 1e-15);
    assert_close(&[SCHEDULE.lr_at(60)], &[(1e-3 + 1e-6) / 2.0], 1e-15);
    let last = 1e-6 + (1e-3 - 1e-6) * (1.0 + (std::f64::consts::PI * 0.99).cos()) / 2.0;
    assert_close(&[SCHEDULE.lr_at(109)], &[last], 1e-15);
    assert_eq!(SCHEDULE.lr_at(110), 1e-6);
    assert_eq!(SCHEDULE.lr_at(1_000_000), 1e-6);
    for step in 10..120 {
        assert!(
            SCHEDULE.lr_at(step + 1) <= SCHEDULE.lr_at(step),
            "step {step}"
        );
    }
}

#[test]
fn degenerate_schedules_do_not_divide_by_zero() {
    let no_warmup = WarmupCosine {
        warmup_steps: 0,
        ..SCHEDULE
    };
    assert_eq!(no_warmup.lr_at(0), 1e-3);
    let all_warmup = WarmupCosine {
        warmup_steps: 10,
        total_steps: 10,
        ..SCHEDULE
    };
    assert_close(&[all_warmup.lr_at(9)], &[1e-3], 1e-15);
    assert_eq!(all_warmup.lr_at(10), 1e-6);
    let empty = WarmupCosine {
        warmup_steps: 0,
        total_steps: 0,
        ..SCHEDULE
    };
    assert_eq!(empty.lr_at(0), 1e-6);
}
