//! `crest links`: creators' tracked links. `issue` writes one per creator ×
//! platform before a flight; `audit` checks, during it, that the ads carry
//! them: spend on links crest cannot attribute is spend no tier can judge.

mod audit;
mod issue;

pub use audit::{audit, AuditOptions};
pub use issue::{issue, IssueOptions};
