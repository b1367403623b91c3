//! The synthetic world behind every simulated API: a seeded roster of creators
//! and the ad accounts that promote them. Everything is a pure function of the
//! seed, so a test can ask the world for the true totals of any report.

use chrono::{Days, NaiveDate};

/// splitmix64: a tiny, well-known mixing function; enough for seeded synthetic data.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A seeded hash of several parts.
pub(crate) fn h(seed: u64, parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(mix(seed), |acc, p| mix(acc ^ p.wrapping_mul(0x2545_F491_4F6C_DD1D)))
}

#[derive(Debug, Clone)]
pub struct WorldConfig {
    pub seed: u64,
    pub creators: usize,
    pub days: u32,
    pub first_day: NaiveDate,
    pub advertisers: usize,
    /// Ads per creator (each creator gets 1..=ads_per_creator, seeded).
    pub ads_per_creator: usize,
    /// Videos per YouTube channel (each channel has 2..=videos_per_channel, seeded).
    pub videos_per_channel: usize,
    /// How many times the platform has restated its recent days: each revision
    /// adds a cent of spend per ad and day, and a conversion where conversions
    /// are counted, on the world's last [`RESTATED_DAYS`] days — late
    /// conversions and billing corrections that a re-read must pick up.
    pub revision: u64,
    /// Creators differ: some click well below their benchmark, some well
    /// above, some never convert (the demo's program, where every tier
    /// occurs). Off, every creator is drawn alike.
    pub spread: bool,
    /// Trafficking slips: one creator Spark Ad in eleven carries the next
    /// creator's link, the copy-paste mistake `crest links audit --roster`
    /// must find. Off, every creator ad carries its own creator's link.
    /// Nothing the real API refuses: TikTok's `/ad/get/` (Business API v1.3,
    /// "Get ads") returns `identity_id`/`identity_type` and
    /// `landing_page_url` as independent fields of an ad, and ad creation
    /// accepts any landing URL with any authorized Spark Ads identity.
    pub crossed_links: bool,
}

/// A creator's standing on one platform: its clicks as a share (per mille)
/// of what the platform's draws give, and whether it converts at all.
/// `base_per_mille` is how far the platform's draws sit above a typical
/// benchmark CTR, so a character lands in the same tier on every platform.
pub fn performer(seed: u64, spread: bool, creator: usize, platform: u64, base_per_mille: u64) -> (u64, bool) {
    if !spread {
        return (1000, true);
    }
    let r = h(seed, &[11, creator as u64, platform]) % 100;
    // Share of creators per character: 12 % well below the benchmark, 12 %
    // somewhat below, 8 % that click but never convert, 30 % well above.
    let (character, converts) = match r {
        0..=11 => (550, true),
        12..=23 => (830, true),
        24..=31 => (1050, false),
        32..=61 => (1600, true),
        _ => (1100, true),
    };
    (character * 1000 / base_per_mille.max(1), converts)
}

/// The days at the end of the world that a revision restates.
pub const RESTATED_DAYS: u32 = 7;

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            seed: 42,
            creators: 60,
            days: 60,
            first_day: NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date"),
            advertisers: 2,
            ads_per_creator: 3,
            videos_per_channel: 3,
            revision: 0,
            spread: false,
            crossed_links: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Creator {
    pub creator_id: String,
    pub handle: String,
    pub followers: u64,
    pub tier: &'static str,
}

#[derive(Debug, Clone)]
pub struct Advertiser {
    pub advertiser_id: String,
    pub name: String,
    pub currency: &'static str,
    pub timezone: &'static str,
}

#[derive(Debug, Clone)]
pub struct Campaign {
    pub advertiser: usize,
    pub campaign_id: String,
    pub name: String,
    pub slug: String,
}

#[derive(Debug, Clone)]
pub struct AdGroup {
    pub campaign: usize,
    pub adgroup_id: String,
    pub name: String,
    /// `CONVERT` groups report conversions; `REACH` groups serve "-".
    pub optimization_goal: &'static str,
    pub click_window: &'static str,
    pub view_window: &'static str,
}

#[derive(Debug, Clone)]
pub struct Ad {
    pub adgroup: usize,
    pub creator: usize,
    /// `false` for the brand's own ads (no creator handle anywhere): a
    /// transform must keep them and flag them unresolved.
    pub from_creator: bool,
    /// Spark Ads identity: `TT_USER` with the creator's handle, or the brand's own `CUSTOMIZED_USER`.
    pub identity_type: &'static str,
    pub identity_id: String,
    /// Above 2^53, as TikTok's are: a float would corrupt it.
    pub ad_id: u64,
    pub name: String,
    pub landing_page_url: String,
    /// The creator whose handle the landing URL carries (`None`: it names
    /// none); another than `creator` where [`WorldConfig::crossed_links`] slipped.
    pub link_creator: Option<usize>,
    /// `None` for Smart+ ads, which TikTok serves without it.
    pub modify_time: Option<String>,
    pub create_time: String,
    pub tiktok_item_id: String,
    /// Active days, as offsets from the world's first day (inclusive).
    pub active_from: u32,
    pub active_to: u32,
}

/// One ad's numbers for one day (or one hour).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdMetrics {
    pub impressions: u64,
    pub clicks: u64,
    pub spend_cents: u64,
    pub reach: u64,
    /// `None` where the platform serves "-" (no conversion tracking).
    pub conversions: Option<u64>,
    pub conversion_value_cents: Option<u64>,
    pub video_plays: u64,
    pub watched_2s: u64,
    pub watched_6s: u64,
    pub likes: u64,
    pub comments: u64,
    pub shares: u64,
    pub follows: u64,
    pub profile_visits: u64,
}

impl AdMetrics {
    pub fn add(&mut self, o: &AdMetrics) {
        self.impressions += o.impressions;
        self.clicks += o.clicks;
        self.spend_cents += o.spend_cents;
        self.reach += o.reach;
        self.conversions = add_opt(self.conversions, o.conversions);
        self.conversion_value_cents = add_opt(self.conversion_value_cents, o.conversion_value_cents);
        self.video_plays += o.video_plays;
        self.watched_2s += o.watched_2s;
        self.watched_6s += o.watched_6s;
        self.likes += o.likes;
        self.comments += o.comments;
        self.shares += o.shares;
        self.follows += o.follows;
        self.profile_visits += o.profile_visits;
    }
}

fn add_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

pub struct World {
    pub config: WorldConfig,
    pub creators: Vec<Creator>,
    pub advertisers: Vec<Advertiser>,
    pub campaigns: Vec<Campaign>,
    pub adgroups: Vec<AdGroup>,
    pub ads: Vec<Ad>,
}

const FIRST: &[&str] = &[
    "maya", "leo", "zoe", "kai", "nina", "omar", "ivy", "jules", "ari", "sam", "noor", "tess", "remy", "lina", "theo",
];
const SECOND: &[&str] = &[
    "makes", "cooks", "lifts", "glows", "travels", "styles", "reads", "plays", "paints", "runs", "bakes", "builds",
];
const PRODUCTS: &[&str] = &[
    "serum",
    "sneakers",
    "protein",
    "planner",
    "headphones",
    "tote",
    "candle",
    "blender",
];
const CLICK_WINDOWS: &[&str] = &["SEVEN_DAYS", "SEVEN_DAYS", "SEVEN_DAYS", "FOURTEEN_DAYS", "ONE_DAY"];
const VIEW_WINDOWS: &[&str] = &["ONE_DAY", "ONE_DAY", "ONE_DAY", "SEVEN_DAYS", "OFF"];

impl World {
    pub fn new(config: WorldConfig) -> World {
        let seed = config.seed;
        let creators: Vec<Creator> = (0..config.creators)
            .map(|i| {
                let r = h(seed, &[1, i as u64]);
                // Log-uniform between 1K and 100K: nano and micro creators.
                let followers = (1000.0 * 100f64.powf((r % 10_000) as f64 / 10_000.0)) as u64;
                let tier = if followers < 10_000 { "nano" } else { "micro" };
                Creator {
                    creator_id: format!("cr_{:05}", i + 1),
                    handle: format!(
                        "{}.{}{}",
                        FIRST[(r >> 20) as usize % FIRST.len()],
                        SECOND[(r >> 28) as usize % SECOND.len()],
                        i + 1
                    ),
                    followers,
                    tier,
                }
            })
            .collect();
        let advertisers: Vec<Advertiser> = (0..config.advertisers.max(1))
            .map(|i| {
                let (currency, timezone) = if i % 2 == 0 {
                    ("USD", "America/Los_Angeles")
                } else {
                    ("EUR", "Europe/Berlin")
                };
                Advertiser {
                    advertiser_id: (7_000_000_000_000_000_000u64 + h(seed, &[2, i as u64]) % 1_000_000_000_000_000_000)
                        .to_string(),
                    name: format!("Brand {} {}", (b'A' + (i % 26) as u8) as char, currency),
                    currency,
                    timezone,
                }
            })
            .collect();
        let mut campaigns = Vec::new();
        let mut adgroups = Vec::new();
        for (a, _) in advertisers.iter().enumerate() {
            for c in 0..3u64 {
                let product = PRODUCTS[(h(seed, &[3, a as u64, c]) % PRODUCTS.len() as u64) as usize];
                let slug = format!("{product}_launch_{}", c + 1);
                campaigns.push(Campaign {
                    advertiser: a,
                    campaign_id: (1_800_000_000_000_000_000u64 + h(seed, &[4, a as u64, c]) % 100_000_000_000_000_000)
                        .to_string(),
                    name: format!("{} launch {} — creators", product, c + 1),
                    slug,
                });
                let campaign = campaigns.len() - 1;
                for g in 0..4u64 {
                    let r = h(seed, &[5, a as u64, c, g]);
                    adgroups.push(AdGroup {
                        campaign,
                        adgroup_id: (1_810_000_000_000_000_000u64 + r % 10_000_000_000_000_000).to_string(),
                        name: format!("{product} creators {}", g + 1),
                        optimization_goal: if g == 3 { "REACH" } else { "CONVERT" },
                        click_window: CLICK_WINDOWS[(r >> 8) as usize % CLICK_WINDOWS.len()],
                        view_window: VIEW_WINDOWS[(r >> 16) as usize % VIEW_WINDOWS.len()],
                    });
                }
            }
        }
        let groups_per_adv = 12;
        let mut ads = Vec::new();
        for (ci, creator) in creators.iter().enumerate() {
            let adv = ci % advertisers.len();
            let n_ads = 1 + (h(seed, &[6, ci as u64]) % config.ads_per_creator.max(1) as u64) as usize;
            for k in 0..n_ads {
                let r = h(seed, &[7, ci as u64, k as u64]);
                let adgroup = adv * groups_per_adv + (r % groups_per_adv as u64) as usize;
                let campaign = &campaigns[adgroups[adgroup].campaign];
                let days = config.days.max(1);
                // Most ads run the whole window; some start late or stop early.
                let active_from = if r.is_multiple_of(4) {
                    ((r >> 8) % (days as u64 / 3 + 1)) as u32
                } else {
                    0
                };
                let active_to = if r.is_multiple_of(7) {
                    (active_from + 1 + ((r >> 16) % days as u64) as u32).min(days - 1)
                } else {
                    days - 1
                };
                let idx = ads.len() as u64;
                // One ad in seventeen is the brand's own, with no creator behind it.
                let from_creator = r % 17 != 4;
                let linked = if config.crossed_links && r % 11 == 5 {
                    (ci + 1) % creators.len()
                } else {
                    ci
                };
                let landing_page_url = landing_url(r, &campaign.slug, &creators[linked].handle, from_creator);
                let link_creator =
                    (from_creator && landing_page_url.contains(&creators[linked].handle)).then_some(linked);
                let created = config.first_day - Days::new(3);
                ads.push(Ad {
                    adgroup,
                    creator: ci,
                    ad_id: 1_790_000_000_000_000_000u64 + idx * 7_919 + (r % 7_919),
                    name: format!("{} × {} #{}", creator.handle, campaign.slug, k + 1),
                    landing_page_url,
                    link_creator,
                    from_creator,
                    identity_type: if from_creator { "TT_USER" } else { "CUSTOMIZED_USER" },
                    identity_id: if from_creator {
                        creator.handle.clone()
                    } else {
                        "brand_studio".into()
                    },
                    // One ad in ten is a Smart+ ad: TikTok omits its modify_time.
                    modify_time: (r % 10 != 3).then(|| format!("{created} 0{}:15:00", (r >> 4) % 10)),
                    create_time: format!("{created} 09:00:00"),
                    tiktok_item_id: (7_300_000_000_000_000_000u64 + (r >> 3) % 100_000_000_000_000_000).to_string(),
                    active_from,
                    active_to,
                });
            }
        }
        World {
            config,
            creators,
            advertisers,
            campaigns,
            adgroups,
            ads,
        }
    }

    /// The creator roster a brand would keep, as CSV (the transform's `--roster`).
    pub fn roster_csv(&self) -> String {
        let mut out = String::from("creator_id,handle,tiktok_handle,instagram_handle,youtube_channel_id,followers,creator_tier,disclosure_status,utm_aliases\n");
        for (i, c) in self.creators.iter().enumerate() {
            // Some rows leave the tier to be derived from followers; some carry an alias.
            let tier = if i % 3 == 0 { "" } else { c.tier };
            let alias = if i % 5 == 0 {
                format!("{}_promo", c.creator_id)
            } else {
                String::new()
            };
            let disclosure = if i % 11 == 0 { "pending" } else { "disclosed" };
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                c.creator_id,
                c.handle,
                c.handle,
                c.handle,
                crate::google::channel_id(self.config.seed, i),
                c.followers,
                tier,
                disclosure,
                alias
            ));
        }
        out
    }

    pub fn day_offset(&self, date: NaiveDate) -> Option<u32> {
        let off = (date - self.config.first_day).num_days();
        (0..self.config.days as i64).contains(&off).then_some(off as u32)
    }

    pub fn date(&self, offset: u32) -> NaiveDate {
        self.config.first_day + Days::new(offset as u64)
    }

    pub fn advertiser_index(&self, id: &str) -> Option<usize> {
        self.advertisers.iter().position(|a| a.advertiser_id == id)
    }

    pub fn ad_advertiser(&self, ad: &Ad) -> usize {
        self.campaigns[self.adgroups[ad.adgroup].campaign].advertiser
    }

    pub fn is_active(&self, ad: &Ad, date: NaiveDate) -> bool {
        self.day_offset(date)
            .is_some_and(|d| d >= ad.active_from && d <= ad.active_to)
    }

    /// One ad's numbers on one day, or `None` when it did not run.
    pub fn ad_day(&self, ad_index: usize, date: NaiveDate) -> Option<AdMetrics> {
        let ad = &self.ads[ad_index];
        let day = self.day_offset(date)?;
        if day < ad.active_from || day > ad.active_to {
            return None;
        }
        let r = h(self.config.seed, &[8, ad.ad_id, day as u64]);
        let r2 = mix(r);
        let creator = &self.creators[ad.creator];
        let reach_scale = (creator.followers as f64).sqrt();
        let impressions = (reach_scale * (5.0 + (r % 400) as f64 / 10.0)) as u64 + (r >> 40) % 50;
        // CTR between 0.2 % and 3 %; some days no click at all.
        let ctr_bp = 20 + (r >> 8) % 280;
        // TikTok's draws average 1.6 %, about 1.45 × a nano or micro benchmark.
        let (per_mille, converts_at_all) = performer(self.config.seed, self.config.spread, ad.creator, 1, 1450);
        let clicks = if (r >> 20).is_multiple_of(23) {
            0
        } else {
            impressions * ctr_bp * per_mille / 10_000_000
        };
        // CPM between $2 and $14.
        let cpm_cents = 200 + (r >> 24) % 1_200;
        let spend_cents = impressions * cpm_cents / 1_000;
        // A revision restates the last days: later conversions and billing corrections.
        let restated = if day + RESTATED_DAYS >= self.config.days {
            self.config.revision
        } else {
            0
        };
        let spend_cents = spend_cents + restated;
        let converts = self.adgroups[ad.adgroup].optimization_goal == "CONVERT";
        let conversions = converts.then(|| {
            if converts_at_all {
                clicks * (r2 % 12) / 100 + restated
            } else {
                0
            }
        });
        let value = conversions.map(|c| c * (1_500 + (r2 >> 8) % 6_000));
        let video_plays = impressions * (40 + (r2 >> 16) % 40) / 100;
        Some(AdMetrics {
            impressions,
            clicks,
            spend_cents,
            reach: impressions * (70 + (r2 >> 24) % 25) / 100,
            conversions,
            conversion_value_cents: value,
            video_plays,
            watched_2s: video_plays * 60 / 100,
            watched_6s: video_plays * 30 / 100,
            likes: video_plays * ((r2 >> 32) % 8) / 100,
            comments: video_plays * ((r2 >> 36) % 3) / 200,
            shares: video_plays * ((r2 >> 40) % 3) / 200,
            follows: clicks / 10,
            profile_visits: clicks / 4,
        })
    }

    /// One ad's numbers on one day split into 24 hours; the hours sum exactly to the day.
    pub fn ad_hours(&self, ad_index: usize, date: NaiveDate) -> Option<[AdMetrics; 24]> {
        let d = self.ad_day(ad_index, date)?;
        let ad = &self.ads[ad_index];
        let weights: Vec<u64> = (0..24u64)
            .map(|hour| {
                let evening = if (17..23).contains(&hour) {
                    6
                } else if hour < 6 {
                    1
                } else {
                    3
                };
                evening + h(self.config.seed, &[9, ad.ad_id, hour]) % 4
            })
            .collect();
        let imps = apportion(d.impressions, &weights);
        let clicks = apportion(d.clicks, &imps);
        let spend = apportion(d.spend_cents, &imps);
        let reach = apportion(d.reach, &imps);
        let conv = d.conversions.map(|c| apportion(c, &clicks));
        let value = match (&conv, d.conversion_value_cents) {
            (Some(c), Some(v)) => Some(apportion(v, c)),
            _ => None,
        };
        let plays = apportion(d.video_plays, &imps);
        let w2 = apportion(d.watched_2s, &plays);
        let w6 = apportion(d.watched_6s, &plays);
        let likes = apportion(d.likes, &plays);
        let comments = apportion(d.comments, &plays);
        let shares = apportion(d.shares, &plays);
        let follows = apportion(d.follows, &clicks);
        let visits = apportion(d.profile_visits, &clicks);
        let mut out = [AdMetrics::default(); 24];
        for (i, m) in out.iter_mut().enumerate() {
            *m = AdMetrics {
                impressions: imps[i],
                clicks: clicks[i],
                spend_cents: spend[i],
                reach: reach[i],
                conversions: conv.as_ref().map(|c| c[i]),
                conversion_value_cents: value.as_ref().map(|v| v[i]),
                video_plays: plays[i],
                watched_2s: w2[i],
                watched_6s: w6[i],
                likes: likes[i],
                comments: comments[i],
                shares: shares[i],
                follows: follows[i],
                profile_visits: visits[i],
            };
        }
        Some(out)
    }
}

/// A landing URL as creators' links really look: mostly clean, sometimes
/// without a scheme, with upper-case keys, percent-encoding, UTMs behind a
/// fragment, a repeated key, or no `utm_content` at all.
fn landing_url(r: u64, slug: &str, handle: &str, from_creator: bool) -> String {
    let product = slug.split('_').next().unwrap_or("p");
    if !from_creator {
        return format!("https://shop.example.com/p/{product}?utm_source=tiktok&utm_medium=paid_social&utm_campaign={slug}&utm_content=brand_promo");
    }
    match (r >> 12) % 9 {
        1 => format!("shop.example.com/p/{product}?UTM_Source=TikTok&utm_medium=paid_social&UTM_CAMPAIGN={slug}&utm_content=%40{handle}"),
        2 => format!("https://shop.example.com/p/{product}#/?utm_source=tiktok&utm_campaign={slug}&utm_content={handle}"),
        3 => format!("https://shop.example.com/p/{product}?utm_content=&utm_content={handle}&utm_source=tiktok&utm_campaign={slug}"),
        4 => format!("https://shop.example.com/p/{product}?utm_source=tiktok&utm_campaign={slug}"),
        _ => format!("https://shop.example.com/p/{product}?utm_source=tiktok&utm_medium=paid_social&utm_campaign={slug}&utm_content={handle}"),
    }
}

/// Splits `total` in proportion to `weights` (largest remainder), exactly.
/// When every weight is zero, everything lands in the first slot.
pub fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u64 = weights.iter().sum();
    let mut out = vec![0u64; weights.len()];
    if total == 0 || weights.is_empty() {
        return out;
    }
    if sum == 0 {
        out[0] = total;
        return out;
    }
    let mut rem: Vec<(u128, usize)> = Vec::with_capacity(weights.len());
    let mut given = 0u64;
    for (i, w) in weights.iter().enumerate() {
        let exact = total as u128 * *w as u128;
        out[i] = (exact / sum as u128) as u64;
        given += out[i];
        rem.push((exact % sum as u128, i));
    }
    rem.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in rem.into_iter().take((total - given) as usize) {
        out[i] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_is_deterministic_and_ids_exceed_f64_precision() {
        let a = World::new(WorldConfig::default());
        let b = World::new(WorldConfig::default());
        assert_eq!(a.ads.len(), b.ads.len());
        assert_eq!(a.ads[5].ad_id, b.ads[5].ad_id);
        assert!(a.ads.iter().all(|ad| ad.ad_id > (1u64 << 53)));
        assert!(a.ads.iter().any(|ad| ad.modify_time.is_none()));
        let day = a.config.first_day;
        assert_eq!(a.ad_day(0, day), b.ad_day(0, day));
    }

    #[test]
    fn hours_sum_to_the_day() {
        let w = World::new(WorldConfig::default());
        let day = w.config.first_day + Days::new(10);
        for i in 0..w.ads.len() {
            if let (Some(d), Some(hours)) = (w.ad_day(i, day), w.ad_hours(i, day)) {
                let mut sum = AdMetrics {
                    conversions: d.conversions.map(|_| 0),
                    conversion_value_cents: d.conversion_value_cents.map(|_| 0),
                    ..Default::default()
                };
                for hm in &hours {
                    sum.add(hm);
                    assert!(hm.clicks <= hm.impressions);
                }
                assert_eq!(sum, d);
            }
        }
    }

    #[test]
    fn apportion_is_exact() {
        assert_eq!(apportion(10, &[1, 1, 1]).iter().sum::<u64>(), 10);
        assert_eq!(apportion(7, &[0, 0]), vec![7, 0]);
        assert_eq!(apportion(5, &[0, 3, 2]), vec![0, 3, 2]);
    }
}
