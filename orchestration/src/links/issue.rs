//! `crest links issue`: one tracked link per creator × platform, before a
//! flight goes live. Each link carries the creator in `utm_source` (their
//! roster id), the platform in `utm_medium`, the campaign code in
//! `utm_campaign` and optionally a content type and offer — lower case,
//! percent-encoded by the URL library, the base URL's own parameters and
//! fragment kept — so the transform's resolver and the brand's site analytics
//! credit every click to the right creator. Written as CSV a link shortener
//! imports in bulk.

use crest_core::storage::{read_file, split_file};
use crest_core::{Error, Result};
use crest_transforms::Roster;
use url::Url;

/// The platforms a link can be issued for, as `utm_medium` names them.
pub const PLATFORMS: [&str; 3] = ["tiktok", "meta", "youtube"];

pub struct IssueOptions {
    pub roster: String,
    pub campaign: String,
    pub base_url: String,
    pub content: Option<String>,
    pub term: Option<String>,
    pub platforms: Vec<String>,
    pub out: Option<String>,
}

/// One issued link.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub creator_id: String,
    pub handle: String,
    pub platform: &'static str,
    pub url: String,
    pub utm: [(&'static str, Option<String>); 5],
}

pub async fn issue(options: IssueOptions) -> Result<()> {
    let bytes = read_file(&options.roster)
        .await?
        .ok_or_else(|| Error::Config(format!("--roster {} does not exist", options.roster)))?;
    let roster = Roster::parse(&options.roster, &bytes)?;
    let platforms = platforms(&options.platforms)?;
    let base = base_url(&options.base_url)?;
    let links = links(
        &roster,
        &base,
        &options.campaign,
        options.content.as_deref(),
        options.term.as_deref(),
        &platforms,
    )?;
    let csv = to_csv(&links, &options.campaign)?;
    match &options.out {
        None => print!("{csv}"),
        Some(spec) => {
            let (dir, name) = split_file(spec, true)?;
            // One put: the file appears whole or not at all.
            dir.put(&name, csv.into()).await?;
            println!(
                "issued {} links ({} creators × {}) into {spec}",
                links.len(),
                roster.len(),
                platforms.join(", ")
            );
        }
    }
    Ok(())
}

fn platforms(asked: &[String]) -> Result<Vec<&'static str>> {
    if asked.is_empty() {
        return Ok(PLATFORMS.to_vec());
    }
    if asked.iter().all(|p| p.trim().is_empty()) {
        return Err(Error::Config(format!(
            "--platforms is empty: name at least one of {}",
            PLATFORMS.join(", ")
        )));
    }
    let mut out: Vec<&'static str> = Vec::new();
    for p in asked.iter().map(|p| p.trim().to_lowercase()).filter(|p| !p.is_empty()) {
        let Some(known) = PLATFORMS.iter().find(|k| **k == p) else {
            return Err(Error::Config(format!(
                "--platforms: '{p}' is not a platform crest issues links for ({})",
                PLATFORMS.join(", ")
            )));
        };
        if !out.contains(known) {
            out.push(known);
        }
    }
    Ok(out)
}

/// The landing page every link starts from: an absolute http(s) URL.
pub fn base_url(raw: &str) -> Result<Url> {
    let url = Url::parse(raw.trim()).map_err(|e| {
        Error::Config(format!(
            "--base-url '{raw}' is not a URL ({e}); give the landing page, e.g. https://shop.example.com/spring"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(Error::Config(format!(
            "--base-url '{raw}' must be an http:// or https:// page"
        )));
    }
    Ok(url)
}

/// A value as it goes into a link: trimmed, lower case.
fn value(v: &str) -> String {
    v.trim().to_lowercase()
}

/// Every creator × platform's link. The base URL may carry `utm_campaign`,
/// `utm_content` or `utm_term` only with the values given here (they are then
/// set once), never `utm_source` or `utm_medium`, which name the creator and
/// the platform.
pub fn links(
    roster: &Roster,
    base: &Url,
    campaign: &str,
    content: Option<&str>,
    term: Option<&str>,
    platforms: &[&'static str],
) -> Result<Vec<Link>> {
    let campaign = value(campaign);
    if campaign.is_empty() {
        return Err(Error::Config("--campaign is empty: give the campaign's code".into()));
    }
    let mut content = content.map(value).filter(|v| !v.is_empty());
    let mut term = term.map(value).filter(|v| !v.is_empty());
    // A content type or offer the base URL carries applies to every link:
    // it is taken as if given, lower case like the rest.
    for (k, v) in base.query_pairs() {
        match k.trim().to_lowercase().as_str() {
            "utm_content" if content.is_none() => content = Some(value(&v)).filter(|v| !v.is_empty()),
            "utm_term" if term.is_none() => term = Some(value(&v)).filter(|v| !v.is_empty()),
            _ => {}
        }
    }
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in base.query_pairs() {
        let key = k.trim().to_lowercase();
        let ours = match key.as_str() {
            "utm_source" | "utm_medium" => {
                return Err(Error::Config(format!(
                    "--base-url already carries {key}={v}: crest sets it per creator and platform; remove it from the base URL"
                )))
            }
            "utm_campaign" => Some(&campaign),
            "utm_content" => content.as_ref(),
            "utm_term" => term.as_ref(),
            _ => None,
        };
        match ours {
            Some(ours) if value(&v) != *ours => {
                return Err(Error::Config(format!(
                    "--base-url carries {key}={v}, which conflicts with {ours}: remove it or give the same value"
                )))
            }
            // The same value: crest sets it once, below.
            Some(_) => {}
            None => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    let mut out = Vec::with_capacity(roster.len() * platforms.len());
    for creator in roster.creators() {
        let source = value(&creator.creator_id);
        for &platform in platforms {
            let utm = [
                ("utm_source", Some(source.clone())),
                ("utm_medium", Some(platform.to_string())),
                ("utm_campaign", Some(campaign.clone())),
                ("utm_content", content.clone()),
                ("utm_term", term.clone()),
            ];
            let mut url = base.clone();
            url.set_query(None);
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in &kept {
                    q.append_pair(k, v);
                }
                for (k, v) in &utm {
                    if let Some(v) = v {
                        q.append_pair(k, v);
                    }
                }
            }
            // The transform reads utm_content first: a content type or offer
            // that names a creator would credit every link to them.
            let resolved = roster.resolve(&crest_transforms::utm::parse_url(url.as_str()), None);
            if resolved.map(|i| &roster.creators()[i].creator_id) != Some(&creator.creator_id) {
                return Err(Error::Config(format!(
                    "{}'s link would resolve to {}: --content or --term names a creator of the roster; choose another value",
                    creator.creator_id,
                    resolved.map_or("nobody".to_string(), |i| roster.creators()[i].creator_id.clone())
                )));
            }
            out.push(Link {
                creator_id: creator.creator_id.clone(),
                handle: creator.handle.clone(),
                platform,
                url: url.to_string(),
                utm,
            });
        }
    }
    Ok(out)
}

/// The links as CSV: the long URL and a title first (what shorteners import),
/// then who and what each link is for.
fn to_csv(links: &[Link], campaign: &str) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| Error::Config(format!("cannot write the links as CSV: {e}"));
    w.write_record([
        "long_url",
        "title",
        "creator_id",
        "handle",
        "platform",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_content",
        "utm_term",
    ])
    .map_err(fail)?;
    for l in links {
        let title = format!("{} · {} · {}", l.handle, l.platform, campaign.trim());
        let mut record = vec![
            l.url.as_str(),
            title.as_str(),
            l.creator_id.as_str(),
            l.handle.as_str(),
            l.platform,
        ];
        record.extend(l.utm.iter().map(|(_, v)| v.as_deref().unwrap_or("")));
        w.write_record(record).map_err(fail)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Config(format!("cannot write the links as CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Config(format!("cannot write the links as CSV: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crest_transforms::utm::parse_url;

    fn roster() -> Roster {
        Roster::parse("r.csv", b"creator_id,handle\nCR_0001,@Maya.Makes\ncr_0002,leo\n").unwrap()
    }

    #[test]
    fn every_link_resolves_back_to_its_creator_and_keeps_the_base() {
        let base = base_url("https://Shop.example.com/p/spring?ref=IG&utm_campaign=Spring+Drop#top").unwrap();
        let links = links(&roster(), &base, "Spring Drop", Some("Reel"), None, &PLATFORMS).unwrap();
        assert_eq!(links.len(), 6);
        let r = roster();
        for l in &links {
            let url = Url::parse(&l.url).unwrap();
            assert_eq!(url.host_str(), Some("shop.example.com"));
            assert_eq!(url.fragment(), Some("top"));
            let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
            assert_eq!(pairs[0], ("ref".into(), "IG".into()), "{}", l.url);
            assert_eq!(pairs.iter().filter(|(k, _)| k == "utm_campaign").count(), 1);
            let utm = parse_url(&l.url);
            assert_eq!(utm.campaign.as_deref(), Some("spring drop"));
            assert_eq!(utm.medium.as_deref(), Some(l.platform));
            let who = r.resolve(&utm, None).unwrap();
            assert_eq!(r.creators()[who].creator_id, l.creator_id);
        }
        assert!(links[0].url.contains("utm_source=cr_0001"), "{}", links[0].url);
    }

    #[test]
    fn conflicting_or_unusable_bases_are_refused() {
        let r = roster();
        for (base, campaign, why) in [
            ("https://x.com/?utm_source=ig", "c", "utm_source"),
            ("https://x.com/?UTM_MEDIUM=paid", "c", "utm_medium"),
            ("https://x.com/?utm_campaign=other", "c", "conflicts"),
            ("https://x.com/", " ", "--campaign"),
        ] {
            let e = links(&r, &base_url(base).unwrap(), campaign, None, None, &PLATFORMS).unwrap_err();
            assert!(e.to_string().contains(why), "{base}: {e}");
        }
        for bad in ["ftp://x.com/", "shop.example.com/p", "mailto:a@b.c", "https://"] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
        let e = links(
            &r,
            &base_url("https://x.com/").unwrap(),
            "c",
            Some("Leo"),
            None,
            &PLATFORMS,
        )
        .unwrap_err();
        assert!(e.to_string().contains("names a creator"), "{e}");
        let l = links(
            &r,
            &base_url("https://x.com/?utm_content=Reel").unwrap(),
            "c",
            None,
            None,
            &["tiktok"],
        )
        .unwrap();
        assert_eq!(l[0].utm[3].1.as_deref(), Some("reel"));
        assert_eq!(l[0].url.matches("utm_content").count(), 1, "{}", l[0].url);
        assert!(platforms(&["".into()]).is_err());
        assert!(platforms(&["snapchat".into()]).is_err());
        assert_eq!(platforms(&["Meta".into(), "meta".into()]).unwrap(), ["meta"]);
    }
}
