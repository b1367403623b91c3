//! `crest-ga4`: extract a brand's GA4 sessions and conversions into raw Parquet.

fn main() -> std::process::ExitCode {
    crest_ga4::command::main()
}
