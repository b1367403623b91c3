//! `crest-tiktok`: extract TikTok ad reports into raw Parquet.

fn main() -> std::process::ExitCode {
    crest_tiktok::command::main()
}
