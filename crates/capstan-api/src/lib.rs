//! The Kubernetes API's shape, as Capstan serves it: what a request's selectors mean and how
//! a merge patch applies. This crate is pure: no IO and no async runtime, so every rule in it
//! is unit-tested on its own and shared by the API server, the CLI and the controllers.
//!
//! - [`LabelSelector`]: `?labelSelector=` (`app=web,tier in (a,b),!canary`), as
//!   apimachinery's `labels.Parse`;
//! - [`FieldSelector`]: `?fieldSelector=` (`metadata.name=x,status.phase!=Running`), as
//!   apimachinery's `fields.ParseSelector`;
//! - [`merge_patch`]: JSON merge patch (RFC 7396), what `kubectl label` and `annotate` send;
//! - [`registry`]: every built-in resource type of the v1.33 API, with what discovery says of
//!   it and how kubectl names it;
//! - [`ApiError`]: errors as `metav1.Status`, with upstream's reasons, codes and messages;
//! - [`validation`]: the name rules, qualified names, label values and `metadata` checks
//!   every kind shares;
//! - [`Quantity`]: resource amounts (`500m`, `1.5Gi`), exact, comparable, canonically printed;
//! - [`table`]: the server-side Tables `kubectl get` prints, with each kind's columns;
//! - [`conversion`]: versions that share storage (HPA v1/v2, core and events.k8s.io Events);
//! - [`discovery`]: the discovery documents, legacy and aggregated, from the registry;
//! - [`strategy`]: per-kind create/update rules: defaults, validation, spec/status split,
//!   selectable fields;
//! - [`patch`]: JSON patch and strategic merge patch;
//! - [`apply`]: managedFields and server-side apply;
//! - [`protobuf`]: protobuf request bodies decoded to JSON;
//! - [`openapi`]: the OpenAPI v3 documents and the schema check behind field validation.

pub mod apply;
pub mod conversion;
pub mod discovery;
#[cfg(test)]
mod exhaustive;
mod merge_patch;
pub mod openapi;
pub mod patch;
pub mod protobuf;
mod quantity;
pub mod registry;
mod selector;
mod status;
pub mod strategy;
pub mod table;
pub mod validation;

pub use merge_patch::merge_patch;
pub use quantity::{Format, Quantity, QuantityError};
pub use selector::{FieldSelector, LabelSelector, Operator, Requirement, SelectorError};
pub use status::{ApiError, Cause, Details, FieldError, FieldErrorKind};
