//! The default plugin set of kube-scheduler's `default-scheduler` profile, in upstream's
//! order (filters run in this order and a node's first rejection is the one reported).

mod balanced_allocation;
mod image_locality;
mod inter_pod_affinity;
mod node_affinity;
mod node_name;
mod node_ports;
mod node_resources_fit;
mod node_unschedulable;
mod pod_topology_spread;
mod taint_toleration;
mod volume_binding;

pub use balanced_allocation::BalancedAllocation;
pub use image_locality::ImageLocality;
pub use inter_pod_affinity::InterPodAffinity;
pub use node_affinity::NodeAffinity;
pub use node_name::NodeName;
pub use node_ports::NodePorts;
pub use node_resources_fit::{
    NodeResourcesFit, ResourceWeight, ScoringStrategy, UtilizationShapePoint,
};
pub use node_unschedulable::NodeUnschedulable;
pub use pod_topology_spread::PodTopologySpread;
pub use taint_toleration::TaintToleration;
pub use volume_binding::VolumeBinding;

use crate::framework::Plugin;

/// The default profile's plugins, filters in upstream's order. Score weights are each
/// plugin's `weight()`: TaintToleration 3, NodeAffinity 2, PodTopologySpread 2,
/// InterPodAffinity 2, the rest 1.
pub fn default_plugins() -> Vec<Box<dyn Plugin>> {
    vec![
        Box::new(NodeUnschedulable),
        Box::new(NodeName),
        Box::new(TaintToleration),
        Box::new(NodeAffinity),
        Box::new(NodePorts),
        Box::new(NodeResourcesFit::default()),
        Box::new(VolumeBinding),
        Box::new(PodTopologySpread),
        Box::new(InterPodAffinity),
        Box::new(BalancedAllocation),
        Box::new(ImageLocality),
    ]
}
