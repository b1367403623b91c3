//! Snowflake as a `crest` target (`snowflake://ACCOUNT/DATABASE/SCHEMA`): its loads through
//! [`crest_core::load::Destination`], the rest through
//! [`crest_core::warehouse::Warehouse`].

use crate::{Snowflake, SnowflakeTarget};
use crest_core::target::{Kind, Opening, Target};
use crest_core::warehouse::SqlTarget;
use crest_core::Result;
use futures::future::LocalBoxFuture;

pub const KIND: Kind = Kind {
    scheme: "snowflake",
    form: "snowflake://ACCOUNT/DATABASE/SCHEMA",
    open: Ok(open),
};

fn open<'a>(o: &'a Opening<'a>) -> LocalBoxFuture<'a, Result<Box<dyn Target>>> {
    Box::pin(async move {
        Ok(Box::new(SqlTarget(
            Snowflake::connect(SnowflakeTarget::parse(o.spec)?)?,
            o.tables.to_vec(),
        )) as Box<dyn Target>)
    })
}
