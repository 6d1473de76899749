//! ResNet and BEiT on the clce engine (see issue: models).
