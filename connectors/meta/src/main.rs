//! `crest-meta`: extract Meta (Facebook and Instagram) ad insights into raw Parquet.

use crest_core::cli;
use crest_meta::command::{self, Cli};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: Cli = match cli::parse() {
        Ok(c) => c,
        Err(code) => return code,
    };
    cli::init_logging(cli.global.log_format);
    cli::run(command::execute(cli))
}
