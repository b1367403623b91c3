//! `crest-meta`: extract Meta (Facebook and Instagram) ad insights into raw Parquet.

fn main() -> std::process::ExitCode {
    crest_meta::command::main()
}
