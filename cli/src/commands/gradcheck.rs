use std::process::ExitCode;

use clce_engine::ops::gradcheck_cases;

use super::CmdResult;
use crate::device_arg::DeviceArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    device: DeviceArg,
    /// Only ops whose name contains this text (e.g. matmul, conv2d, softmax).
    #[arg(long)]
    op: Option<String>,
}

pub fn run(args: Args) -> CmdResult {
    let device = args.device.resolve()?;
    let cases: Vec<_> = gradcheck_cases()
        .into_iter()
        .filter(|c| {
            args.op
                .as_ref()
                .is_none_or(|op| c.name.contains(op.as_str()))
        })
        .collect();
    if cases.is_empty() {
        return Err(format!(
            "no op matches --op {:?}; run without --op to list them all",
            args.op.unwrap_or_default()
        )
        .into());
    }
    println!(
        "gradient check on {device}: central differences in f64 on the CPU vs backward on {device}"
    );
    println!(
        "{:<24} {:<40} {:>11}  result",
        "op", "input shapes", "max rel err"
    );
    let mut failed = 0;
    for case in &cases {
        match case.run(&device) {
            Ok(report) => {
                println!("{}", report.row());
                failed += usize::from(!report.passed());
            }
            Err(e) => {
                println!(
                    "{:<24} {:<40} {:>11}  FAIL ({e})",
                    case.name,
                    case.shapes_string(),
                    "-"
                );
                failed += 1;
            }
        }
    }
    println!("{} passed, {} failed", cases.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
