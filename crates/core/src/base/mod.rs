//! The leaf of the runtime half of core: what every trait file (`exec`, `tool`, `llm`,
//! `access`, `hil`) and the [`Store`](crate::store::Store) supertrait share — tenant ids and
//! the clock ([`TenantId`], [`DEFAULT_TENANT`], [`now_ms`]), the errors with their stable
//! codes ([`StoreError`] and [`Result`], [`HilError`], [`NodeError`], [`codes`]) and the
//! conversation status names [`HilError`] speaks of ([`ConvStatus`]).
//!
//! It imports nothing else from the crate, so the trait files import it and `store` imports
//! the trait files: no module imports one that imports it back. Each item is also re-exported
//! where it was first defined (`store::TenantId`, `exec::NodeError`, `hil::HilError`, …), so
//! those paths keep working.

pub mod codes;
mod conv_status;
mod error;
mod ids;
mod named;
mod node_error;

pub use conv_status::ConvStatus;
pub use error::{HilError, Result, StoreError};
pub use ids::{DEFAULT_TENANT, TenantId, now_ms};
pub use node_error::NodeError;

pub(crate) use named::named;
