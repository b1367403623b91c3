//! `crest-youtube`: creators' organic YouTube videos (YouTube Analytics) and
//! the brand's YouTube ads (Google Ads) into raw Parquet.

fn main() -> std::process::ExitCode {
    crest_youtube::command::main()
}
