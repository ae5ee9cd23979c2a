//! `cargo xtask lint terraform`: static checks of the project's files that no compiler or
//! formatter makes (see [`terraform`]); exit 1 with one line per problem.

use std::process::ExitCode;

use crate::util;

pub(crate) mod terraform;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum Target {
    /// deploy/terraform and deploy/environments: module calls, variables, outputs, IAM,
    /// environment agreement and the page-token key (no provider download needed).
    Terraform,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let root = util::project_root();
    let (what, problems) = match args.target {
        Target::Terraform => ("deploy/terraform", terraform::lint(&root)?),
    };
    if problems.is_empty() {
        println!("xtask: {what} passes every check");
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    eprintln!("xtask: {what} has {} problems", problems.len());
    Ok(ExitCode::FAILURE)
}
