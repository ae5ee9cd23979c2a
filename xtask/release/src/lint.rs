//! `cargo xtask lint terraform`: static checks of the project's files that no compiler or
//! formatter makes (see [`terraform`]); exit 1 with one line per problem.

use std::process::ExitCode;

use crate::util;

#[cfg(test)]
mod log_fields;
pub(crate) mod terraform;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum Target {
    /// deploy/terraform and deploy/environments: module calls, variables, outputs, IAM,
    /// environment agreement, the page-token key and the provider schema (no provider download
    /// needed).
    Terraform {
        /// Fetch the Google providers' schemas from their cdktf npm packages (needs npm and the
        /// network) into deploy/terraform/provider-schema/, then lint.
        #[arg(long)]
        refresh_schema: bool,
    },
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let root = util::project_root();
    let (what, problems) = match args.target {
        Target::Terraform { refresh_schema } => {
            if refresh_schema {
                terraform::schema::refresh::refresh(&root)?;
            }
            ("deploy/terraform", terraform::lint(&root)?)
        }
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
