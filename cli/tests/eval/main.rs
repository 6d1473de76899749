//! Tests of the evaluation: the few-shot splits of CIFAR-100 on a small fake copy with the
//! real class names, few-shot from images to accuracy with fake feature extractors, and the
//! `fewshot`, `analyze` and `plot` commands as a user runs them.
mod benchmarks;
mod commands;
mod pipeline;
