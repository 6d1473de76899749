//! Tests of the evaluation: the few-shot splits of CIFAR-100 on a small fake copy with the
//! real class names, and few-shot from images to accuracy with fake feature extractors.
mod benchmarks;
mod pipeline;
