//! The raw `google_ads/ad_daily` table: its columns, the conversion-lag
//! bucket columns, and the builders that assemble a slice's batch.
use super::*;

pub(super) fn fits(v: i128, what: &str) -> std::result::Result<i128, String> {
    if v.abs() > MAX_DECIMAL {
        return Err(format!(
            "{what} {v} (millionths) is beyond what crest stores (under 10^12)"
        ));
    }
    Ok(v)
}

/// `segments.conversion_lag_bucket` values: (enum, from day, to day). The raw
/// columns are named after the day bounds so readers need no enum table.
pub const LAG_BUCKETS: &[(&str, u32, u32)] = &[
    ("LESS_THAN_ONE_DAY", 0, 1),
    ("ONE_TO_TWO_DAYS", 1, 2),
    ("TWO_TO_THREE_DAYS", 2, 3),
    ("THREE_TO_FOUR_DAYS", 3, 4),
    ("FOUR_TO_FIVE_DAYS", 4, 5),
    ("FIVE_TO_SIX_DAYS", 5, 6),
    ("SIX_TO_SEVEN_DAYS", 6, 7),
    ("SEVEN_TO_EIGHT_DAYS", 7, 8),
    ("EIGHT_TO_NINE_DAYS", 8, 9),
    ("NINE_TO_TEN_DAYS", 9, 10),
    ("TEN_TO_ELEVEN_DAYS", 10, 11),
    ("ELEVEN_TO_TWELVE_DAYS", 11, 12),
    ("TWELVE_TO_THIRTEEN_DAYS", 12, 13),
    ("THIRTEEN_TO_FOURTEEN_DAYS", 13, 14),
    ("FOURTEEN_TO_TWENTY_ONE_DAYS", 14, 21),
    ("TWENTY_ONE_TO_THIRTY_DAYS", 21, 30),
    ("THIRTY_TO_FORTY_FIVE_DAYS", 30, 45),
    ("FORTY_FIVE_TO_SIXTY_DAYS", 45, 60),
    ("SIXTY_TO_NINETY_DAYS", 60, 90),
];
pub(super) const NB: usize = LAG_BUCKETS.len();

/// `conversions_lag_00_01d`: conversions of clicks on the row's date that
/// came 0 to 1 days later.
pub fn lag_column(prefix: &str, from: u32, to: u32) -> String {
    format!("{prefix}_lag_{from:02}_{to:02}d")
}

pub fn ads_schema() -> SchemaRef {
    let utf8 = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let int = |n: &str| Field::new(n, DataType::Int64, true);
    let mut fields = vec![
        utf8("customer_id", false),
        utf8("currency", true),
        utf8("time_zone", true),
        Field::new("date", DataType::Date32, false),
        utf8("campaign_id", true),
        utf8("campaign_name", true),
        utf8("advertising_channel_type", true),
        utf8("ad_group_id", true),
        utf8("ad_group_name", true),
        utf8("ad_id", false),
        utf8("ad_name", true),
        utf8("final_url", true),
        int("impressions"),
        int("clicks"),
        Field::new("cost", DECIMAL, true),
        int("video_views"),
        int("engagements"),
        int("view_through_conversions"),
        Field::new("conversions", DECIMAL, true),
        Field::new("conversions_value", DECIMAL, true),
    ];
    for (_, from, to) in LAG_BUCKETS {
        fields.push(Field::new(lag_column("conversions", *from, *to), DECIMAL, false));
    }
    for (_, from, to) in LAG_BUCKETS {
        fields.push(Field::new(lag_column("conversions_value", *from, *to), DECIMAL, false));
    }
    // The conversion actions' lookback windows: which view-through
    // conversions the transform may count as the standard window's view part.
    fields.push(Field::new("click_through_window_days", DataType::Int32, true));
    fields.push(Field::new("view_through_window_days", DataType::Int32, true));
    fields.push(Field::new(
        "extracted_at",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    ));
    fields.push(utf8("run_id", false));
    Arc::new(Schema::new(fields).with_metadata(HashMap::from([(
        "crest.schema".to_string(),
        ADS_SCHEMA_TAG.to_string(),
    )])))
}

/// Column builders of the raw table's metric columns (customer_id …
/// conversions_value); [`assemble`] adds the lag buckets and the run columns.
pub(super) struct Columns {
    pub(super) strings: Vec<StringBuilder>,
    pub(super) date: Date32Builder,
    pub(super) ints: Vec<Int64Builder>,
    pub(super) decimals: Vec<Decimal128Builder>,
    pub(super) rows: usize,
}

pub(super) const STRINGS: usize = 11;
/// Positions of `date` and `ad_id` among the raw columns (see [`ads_schema`]).
pub(super) const DATE_COL: usize = 3;
pub(super) const AD_COL: usize = 9;
/// Rows per Arrow batch (Google's stream batches hold up to 10,000 too).
pub(super) const ROWS_PER_BATCH: usize = 10_000;
pub(super) const INTS: usize = 5;

impl Columns {
    pub(super) fn new() -> Self {
        Columns {
            strings: (0..STRINGS).map(|_| StringBuilder::new()).collect(),
            date: Date32Builder::new(),
            ints: (0..INTS).map(|_| Int64Builder::new()).collect(),
            decimals: (0..3)
                .map(|_| Decimal128Builder::new().with_data_type(DECIMAL))
                .collect(),
            rows: 0,
        }
    }

    pub(super) fn push(&mut self, strings: [Option<&str>; STRINGS], date: i32, ints: [i64; INTS], decimals: [i128; 3]) {
        for (b, s) in self.strings.iter_mut().zip(strings) {
            b.append_option(s);
        }
        self.date.append_value(date);
        for (b, v) in self.ints.iter_mut().zip(ints) {
            b.append_value(v);
        }
        for (b, v) in self.decimals.iter_mut().zip(decimals) {
            b.append_value(v);
        }
        self.rows += 1;
    }

    /// The columns in the schema's order, up to conversions_value.
    pub(super) fn finish(mut self) -> Vec<ArrayRef> {
        let mut s = self.strings.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(64);
        // customer_id, currency, time_zone, date, campaign_id … final_url
        columns.extend(s.by_ref().take(3));
        columns.push(Arc::new(self.date.finish()));
        columns.extend(s.by_ref().take(STRINGS - 3));
        let mut ints = self.ints.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut decs = self.decimals.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        // impressions, clicks, cost, video_views, engagements, view_through, conversions, value
        columns.extend(ints.by_ref().take(2));
        columns.extend(decs.by_ref().take(1));
        columns.extend(ints.by_ref().take(3));
        columns.extend(decs.by_ref().take(2));
        columns
    }
}

/// Metric columns + each row's lag buckets (zero where Google served none)
/// + extracted_at and run_id.
pub(super) fn assemble(
    mut columns: Vec<ArrayRef>,
    lags: &HashMap<String, HashMap<i32, Lags>>,
    windows: (Option<u32>, Option<u32>),
    schema: &SchemaRef,
    run_id: &str,
    extracted_at_us: i64,
) -> std::result::Result<RecordBatch, String> {
    let n = columns[0].len();
    let dates = columns[DATE_COL].as_primitive::<Date32Type>().clone();
    let ads = columns[AD_COL].as_string::<i32>().clone();
    let dec = || Decimal128Builder::with_capacity(n).with_data_type(DECIMAL);
    let mut conv: Vec<Decimal128Builder> = (0..NB).map(|_| dec()).collect();
    let mut value: Vec<Decimal128Builder> = (0..NB).map(|_| dec()).collect();
    for i in 0..n {
        let l = lags.get(ads.value(i)).and_then(|by_date| by_date.get(&dates.value(i)));
        for k in 0..NB {
            conv[k].append_value(l.map_or(0, |l| l.0[k]));
            value[k].append_value(l.map_or(0, |l| l.1[k]));
        }
    }
    columns.extend(conv.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend(value.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    for days in [windows.0, windows.1] {
        let days = days.and_then(|d| i32::try_from(d).ok());
        columns.push(Arc::new(arrow::array::Int32Array::from(vec![days; n])));
    }
    columns.extend(crest_core::raw::run_columns(n, run_id, extracted_at_us));
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}
