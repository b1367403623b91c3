//! BigQuery as a `crest` target (`bigquery://PROJECT/DATASET`): its loads through
//! [`crest_core::load::Destination`], the rest through
//! [`crest_core::warehouse::Warehouse`].

use crate::{BigQuery, BigQueryTarget};
use crest_core::target::{Kind, Opening, Target};
use crest_core::warehouse::SqlTarget;
use crest_core::Result;
use futures::future::LocalBoxFuture;

pub const KIND: Kind = Kind {
    scheme: "bigquery",
    form: "bigquery://PROJECT/DATASET",
    open: Ok(open),
};

fn open<'a>(o: &'a Opening<'a>) -> LocalBoxFuture<'a, Result<Box<dyn Target>>> {
    Box::pin(async move {
        Ok(Box::new(SqlTarget(
            BigQuery::connect(BigQueryTarget::parse(o.spec)?).await?,
            o.tables.to_vec(),
        )) as Box<dyn Target>)
    })
}
