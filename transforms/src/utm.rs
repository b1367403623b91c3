//! UTM parameters from landing URLs and Meta `url_tags`, with a real URL
//! parser: percent-decoding, case-insensitive keys, the first non-empty value
//! of a repeated key, UTMs behind a fragment (`#/?utm_…`), and links typed
//! without a scheme.

use url::Url;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Utm {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
    pub content: Option<String>,
    pub term: Option<String>,
}

impl Utm {
    pub fn is_empty(&self) -> bool {
        self.source.is_none()
            && self.medium.is_none()
            && self.campaign.is_none()
            && self.content.is_none()
            && self.term.is_none()
    }

    fn take_pairs<'a>(&mut self, pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>) {
        for (k, v) in pairs {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            let slot = match k.trim().to_ascii_lowercase().as_str() {
                "utm_source" => &mut self.source,
                "utm_medium" => &mut self.medium,
                "utm_campaign" => &mut self.campaign,
                "utm_content" => &mut self.content,
                "utm_term" => &mut self.term,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.to_string());
            }
        }
    }
}

/// UTMs of a landing URL (`None` and unparsable URLs give no UTMs).
pub fn parse_url(raw: &str) -> Utm {
    let raw = raw.trim();
    let mut utm = Utm::default();
    if raw.is_empty() {
        return utm;
    }
    let url = Url::parse(raw).or_else(|_| Url::parse(&format!("https://{}", raw.trim_start_matches("//"))));
    let Ok(url) = url else {
        // Not a URL at all: maybe a bare query string.
        return parse_query(raw);
    };
    utm.take_pairs(url.query_pairs());
    if let Some(fragment) = url.fragment() {
        // Single-page shops put the query behind the fragment: `#/?utm_source=…`.
        if let Some((_, q)) = fragment.split_once('?') {
            utm.take_pairs(url::form_urlencoded::parse(q.as_bytes()));
        } else if fragment.contains("utm_") {
            utm.take_pairs(url::form_urlencoded::parse(fragment.as_bytes()));
        }
    }
    utm
}

/// UTMs of a query string such as Meta's `url_tags` (`utm_source=fb&utm_content=…`).
pub fn parse_query(raw: &str) -> Utm {
    let mut utm = Utm::default();
    utm.take_pairs(url::form_urlencoded::parse(
        raw.trim().trim_start_matches('?').as_bytes(),
    ));
    utm
}

/// A handle as people write it, reduced to what identifies it: trimmed,
/// lower-case, without a leading `@`.
pub fn normalize_handle(s: &str) -> String {
    s.trim().trim_start_matches('@').trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messy_links_give_clean_utms() {
        let u = parse_url("shop.example.com/p/x?UTM_Source=TikTok&utm_content=%40maya.makes1");
        assert_eq!(u.source.as_deref(), Some("TikTok"));
        assert_eq!(u.content.as_deref(), Some("@maya.makes1"));
        let u = parse_url("https://shop.example.com/p/x#/?utm_source=tiktok&utm_content=leo");
        assert_eq!(u.content.as_deref(), Some("leo"));
        let u = parse_url("https://x.com/?utm_content=&utm_content=zoe&utm_content=other");
        assert_eq!(u.content.as_deref(), Some("zoe"));
        let u = parse_url("https://x.com/?utm_campaign=spring+sale%202026");
        assert_eq!(u.campaign.as_deref(), Some("spring sale 2026"));
        assert!(parse_url("").is_empty());
        assert!(parse_url("https://x.com/no-utms").is_empty());
        assert_eq!(
            parse_query("utm_source=fb&utm_content=kai").content.as_deref(),
            Some("kai")
        );
    }

    fn enc(s: &str) -> String {
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    proptest! {
        #[test]
        fn any_value_survives_encoding_case_and_placement(
            value in "[a-zA-Z0-9@._ %&=+#-]{1,24}",
            source in "[a-z]{1,10}",
            upper in any::<bool>(),
            scheme in any::<bool>(),
            in_fragment in any::<bool>(),
            repeat_empty in any::<bool>(),
        ) {
            prop_assume!(!value.trim().is_empty());
            let key = if upper { "UTM_Content" } else { "utm_content" };
            let mut q = format!("utm_source={}", enc(&source));
            if repeat_empty { q.push_str(&format!("&{key}=")); }
            q.push_str(&format!("&{key}={}", enc(&value)));
            let base = if scheme { "https://shop.example.com/p/1" } else { "shop.example.com/p/1" };
            let link = if in_fragment { format!("{base}#/?{q}") } else { format!("{base}?{q}") };
            let u = parse_url(&link);
            prop_assert_eq!(u.content.as_deref(), Some(value.trim()));
            prop_assert_eq!(u.source.as_deref(), Some(source.as_str()));
        }

        #[test]
        fn parsing_never_panics(s in ".{0,200}") {
            let _ = parse_url(&s);
            let _ = parse_query(&s);
        }
    }
}
