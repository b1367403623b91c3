//! Decoding `searchStream` rows borrowed from the body: metric rows into
//! the column builders, lag rows into per-ad conversion buckets; micros and
//! conversion doubles as exact decimals.
use super::*;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct AdsRow<'a> {
    #[serde(borrow, default)]
    pub(super) customer: Option<CustomerObj<'a>>,
    #[serde(borrow, default)]
    pub(super) campaign: Option<Named<'a>>,
    #[serde(borrow, default)]
    pub(super) ad_group: Option<Named<'a>>,
    #[serde(borrow, default)]
    pub(super) ad_group_ad: Option<AdGroupAdObj<'a>>,
    #[serde(borrow, default)]
    pub(super) segments: Option<Segments<'a>>,
    #[serde(borrow, default)]
    pub(super) metrics: Option<Metrics<'a>>,
    #[serde(borrow, default)]
    pub(super) conversion_action: Option<ConversionActionObj<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConversionActionObj<'a> {
    #[serde(borrow, default)]
    pub(super) status: Option<Text<'a>>,
    #[serde(default)]
    pub(super) include_in_conversions_metric: bool,
    #[serde(borrow, default)]
    pub(super) click_through_lookback_window_days: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) view_through_lookback_window_days: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct CustomerObj<'a> {
    #[serde(borrow, default)]
    pub(super) descriptive_name: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) currency_code: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) time_zone: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Named<'a> {
    #[serde(borrow, default)]
    pub(super) id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) name: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) advertising_channel_type: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
pub(super) struct AdGroupAdObj<'a> {
    #[serde(borrow, default)]
    pub(super) ad: Option<AdObj<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct AdObj<'a> {
    #[serde(borrow, default)]
    pub(super) id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) name: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) final_urls: Vec<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Segments<'a> {
    #[serde(borrow, default)]
    pub(super) date: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Metrics<'a> {
    #[serde(borrow, default)]
    pub(super) impressions: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) clicks: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) cost_micros: Option<Text<'a>>,
    /// `videoTrueviewViews` from v22 on, `videoViews` before.
    #[serde(borrow, default, alias = "videoTrueviewViews")]
    pub(super) video_views: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) engagements: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) view_through_conversions: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) conversions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) conversions_value: Option<&'a RawValue>,
}

pub(super) fn text<'b>(v: &'b Option<Text<'_>>) -> Option<&'b str> {
    v.as_ref().map(|t| t.as_str())
}

/// An int64 served as a string; omitted means 0.
pub(super) fn int64(v: &Option<Text<'_>>, what: &str) -> std::result::Result<i64, String> {
    match v {
        None => Ok(0),
        Some(t) => t
            .as_str()
            .parse::<i64>()
            .map_err(|_| format!("{what} '{}' is not an int64", t.as_str())),
    }
}

/// A JSON number as an exact decimal with six places (rounded half away
/// from zero beyond that): `21.5` → 21_500_000. Omitted means 0.
pub fn decimal6(v: Option<&RawValue>, what: &str) -> std::result::Result<i128, String> {
    let Some(raw) = v else { return Ok(0) };
    let text = raw.get().trim().trim_matches('"');
    if let Some(exact) = plain_decimal6(text) {
        return fits(exact, what);
    }
    let d = Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| format!("{what} '{text}' is not a number"))?;
    let d = d.round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    let scale = d.scale();
    fits(d.mantissa() * 10i128.pow(6 - scale), what)
}

/// `-?digits[.digits]` with at most six decimals, as Google serves most
/// doubles, parsed without a general decimal parser.
pub(super) fn plain_decimal6(text: &str) -> Option<i128> {
    let (neg, t) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() || int.len() > 20 || frac.len() > 6 {
        return None;
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (b - b'0') as i128;
    }
    v *= 10i128.pow(6 - frac.len() as u32);
    Some(if neg { -v } else { v })
}

/// A conversion-lag row: only what that query selects.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LagRow<'a> {
    #[serde(borrow)]
    pub(super) segments: LagSegments<'a>,
    #[serde(borrow)]
    pub(super) ad_group_ad: LagAdGroupAd<'a>,
    #[serde(borrow, default)]
    pub(super) metrics: LagMetrics<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LagSegments<'a> {
    #[serde(borrow)]
    pub(super) date: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) conversion_lag_bucket: Cow<'a, str>,
}

#[derive(Deserialize)]
pub(super) struct LagAdGroupAd<'a> {
    #[serde(borrow)]
    pub(super) ad: LagAd<'a>,
}

#[derive(Deserialize)]
pub(super) struct LagAd<'a> {
    #[serde(borrow)]
    pub(super) id: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct LagMetrics<'a> {
    #[serde(borrow, default)]
    pub(super) conversions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) conversions_value: Option<&'a RawValue>,
}

/// Conversions and values by lag bucket, per ad and date.
pub(super) fn decode_lags(body: &[u8]) -> std::result::Result<LagMap, Verdict> {
    let mut out: LagMap = HashMap::new();
    each_row(body, |row: LagRow<'_>| {
        let date = crest_core::window::ymd(&row.segments.date).ok_or("segments.date is not a date")?;
        let bucket = &*row.segments.conversion_lag_bucket;
        let Some(b) = LAG_BUCKETS.iter().position(|(name, _, _)| *name == bucket) else {
            return Err(format!("unknown conversionLagBucket '{bucket}'"));
        };
        let ad = &*row.ad_group_ad.ad.id;
        // A key is allocated once per ad, not once per bucket row.
        if !out.contains_key(ad) {
            out.insert(ad.to_string(), HashMap::new());
        }
        let e = out
            .get_mut(ad)
            .ok_or("conversion-lag rows")?
            .entry(Date32Type::from_naive_date(date))
            .or_insert(([0; NB], [0; NB]));
        e.0[b] += decimal6(row.metrics.conversions, "conversions")?;
        e.1[b] += decimal6(row.metrics.conversions_value, "conversionsValue")?;
        Ok(())
    })?;
    Ok(out)
}

/// The metrics rows as raw columns, in batches of [`ROWS_PER_BATCH`].
pub(super) fn decode_metrics(
    body: &[u8],
    customer: &str,
    cur: Option<&str>,
    tz: Option<&str>,
) -> std::result::Result<Vec<Vec<ArrayRef>>, Verdict> {
    let mut out = Vec::new();
    let mut cols = Columns::new();
    each_row(body, |row: AdsRow<'_>| {
        let seg = row.segments.unwrap_or_default();
        let date = seg
            .date
            .as_ref()
            .and_then(|d| crest_core::window::ymd(d.as_str()))
            .ok_or("a row lacks segments.date")?;
        let campaign = row.campaign.unwrap_or_default();
        let group = row.ad_group.unwrap_or_default();
        let ad = row.ad_group_ad.and_then(|a| a.ad).unwrap_or_default();
        let ad_id = ad.id.as_ref().ok_or("a row lacks adGroupAd.ad.id")?.as_str();
        let m = row.metrics.unwrap_or_default();
        cols.push(
            [
                Some(customer),
                cur,
                tz,
                text(&campaign.id),
                text(&campaign.name),
                text(&campaign.advertising_channel_type),
                text(&group.id),
                text(&group.name),
                Some(ad_id),
                text(&ad.name),
                ad.final_urls.first().map(|u| u.as_str()),
            ],
            Date32Type::from_naive_date(date),
            [
                int64(&m.impressions, "impressions")?,
                int64(&m.clicks, "clicks")?,
                int64(&m.video_views, "videoViews")?,
                int64(&m.engagements, "engagements")?,
                int64(&m.view_through_conversions, "viewThroughConversions")?,
            ],
            [
                fits(int64(&m.cost_micros, "costMicros")? as i128, "costMicros")?,
                decimal6(m.conversions, "conversions")?,
                decimal6(m.conversions_value, "conversionsValue")?,
            ],
        );
        if cols.rows == ROWS_PER_BATCH {
            out.push(std::mem::replace(&mut cols, Columns::new()).finish());
        }
        Ok(())
    })?;
    if cols.rows > 0 {
        out.push(cols.finish());
    }
    Ok(out)
}
