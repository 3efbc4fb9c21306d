//! The ImageLocality plugin: favors nodes that already have the pod's container images, by
//! their size, discounted for images that few nodes have so that pods do not pile onto the
//! nodes that pulled an image first.

use crate::framework::{
    ClusterEvent, CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, Snapshot, Status,
    normalized_image_name,
};

const MIB: i64 = 1024 * 1024;
/// Below this much (scaled) image size present, a node scores 0. The two thresholds bracket
/// the sizes of most images in registries.
const MIN_THRESHOLD: i64 = 23 * MIB;
/// Per container: at this much image size present, a node scores MAX_NODE_SCORE.
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MIB;

/// The pod's images and how widespread each is, computed once per cycle.
#[derive(Debug, Clone)]
struct PodImages {
    /// Every node of the cluster, not only the feasible ones.
    total_nodes: usize,
    /// One entry per container, init containers included: the normalized image name and on
    /// how many nodes it is.
    images: Vec<(String, usize)>,
}

impl PodImages {
    /// The sum, over the pod's containers whose image the node has, of the image's size
    /// scaled by the share of nodes that have it.
    fn scaled_size_on(&self, node: &NodeInfo) -> i64 {
        if self.total_nodes == 0 {
            return 0;
        }
        self.images
            .iter()
            .filter_map(|(image, num_nodes)| {
                let state = node.image_states.get(image)?;
                let spread = *num_nodes as f64 / self.total_nodes as f64;
                Some((state.size_bytes as f64 * spread) as i64)
            })
            .sum()
    }
}

/// Maps the scaled size present into 0..=MAX_NODE_SCORE, linearly between the minimum
/// threshold and the per-container maximum times the number of containers.
fn score_for(scaled_size: i64, containers: usize) -> i64 {
    let max_threshold = MAX_CONTAINER_THRESHOLD * containers as i64;
    // Not `clamp`, which panics when the maximum is below the minimum: that is the case of
    // a pod without containers, which the API forbids but which should not crash a cycle.
    let clamped = scaled_size.min(max_threshold).max(MIN_THRESHOLD);
    MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
}

/// Upstream's `ImageLocality` plugin.
#[derive(Debug, Default)]
pub struct ImageLocality;

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }

    /// A score plugin rejects no pod, so no event needs to bring one back.
    fn events(&self) -> &'static [ClusterEvent] {
        &[]
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        _feasible: &[&NodeInfo],
    ) -> Status {
        let Some(spec) = &pod.pod.spec else { return Status::skip() };
        let images = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|container| {
                let image = normalized_image_name(container.image.as_deref().unwrap_or_default());
                let num_nodes = snapshot.image_nodes.get(&image).copied().unwrap_or(0);
                (image, num_nodes)
            })
            .collect();
        state.insert(self.name(), PodImages { total_nodes: snapshot.nodes.len(), images });
        Status::success()
    }

    /// Without the pre-score state (which the framework always computes first) every node
    /// scores 0.
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(images) = state.get::<PodImages>(self.name()) else { return 0 };
        score_for(images.scaled_size_on(node), images.images.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{node, node_info, pod_info, snapshot};
    use serde_json::{Value, json};

    /// A node with these images, each given as (name, size in MiB).
    fn node_with_images(name: &str, images: &[(&str, i64)]) -> NodeInfo {
        let images: Vec<Value> = images
            .iter()
            .map(|(image, mib)| json!({"names": [image], "sizeBytes": mib * MIB}))
            .collect();
        node_info(node(json!({"metadata": {"name": name}, "status": {"images": images}})), vec![])
    }

    /// A pod whose init containers and containers run these images.
    fn pod_with_images(init: &[&str], containers: &[&str]) -> PodInfo {
        let list = |images: &[&str]| -> Vec<Value> {
            images
                .iter()
                .enumerate()
                .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
                .collect()
        };
        pod_info(json!({"metadata": {"name": "p"},
            "spec": {"initContainers": list(init), "containers": list(containers)}}))
    }

    /// Scores the pod on every node of a cluster made of `nodes`.
    fn check(pod: PodInfo, nodes: Vec<NodeInfo>, expected: &[i64]) {
        let snapshot = snapshot(nodes);
        let feasible: Vec<&NodeInfo> = snapshot.nodes.iter().map(|node| &**node).collect();
        let mut state = CycleState::default();
        assert!(ImageLocality.pre_score(&mut state, &pod, &snapshot, &feasible).is_success());
        let mut scores: Vec<i64> =
            feasible.iter().map(|node| ImageLocality.score(&state, &pod, node)).collect();
        ImageLocality.normalize_scores(&state, &pod, &mut scores);
        assert_eq!(scores, expected, "{:?}", pod.pod.spec);
    }

    /// Three nodes: an app image of 250 MiB on the first two, a database image of 300 MiB and
    /// a base image of 3000 MiB on the first only, and nothing on the third.
    fn three_nodes() -> Vec<NodeInfo> {
        vec![
            node_with_images(
                "n1",
                &[("registry/app:latest", 250), ("registry/db:v1", 300), ("base:v1", 3000)],
            ),
            node_with_images("n2", &[("registry/app:latest", 250)]),
            node_with_images("n3", &[]),
        ]
    }

    #[test]
    fn scores() {
        // 250 MiB × 2/3 = 166.7 MiB of the 23..1000 MiB range: 14. The pod's image name gets
        // its ":latest" tag before being looked up.
        check(pod_with_images(&[], &["registry/app"]), three_nodes(), &[14, 14, 0]);
        // Adding 300 MiB × 1/3 = 100 MiB where the database image is, in a range of
        // 23..2000 MiB for two containers: 12; the app image alone: 7.
        check(
            pod_with_images(&[], &["registry/app", "registry/db:v1"]),
            three_nodes(),
            &[12, 7, 0],
        );
        // Init containers count like the others.
        check(pod_with_images(&["registry/db:v1"], &["registry/app"]), three_nodes(), &[12, 7, 0]);
        // 3000 MiB × 1/3 = 1000 MiB: the top of the range for one container.
        check(pod_with_images(&[], &["base:v1"]), three_nodes(), &[100, 0, 0]);
        // An image on one node of three, 600 MiB × 1/3 = 200 MiB: 18; on two of three: 38.
        let big = |name| node_with_images(name, &[("big:v1", 600)]);
        check(
            pod_with_images(&[], &["big:v1"]),
            vec![big("n1"), node_with_images("n2", &[]), node_with_images("n3", &[])],
            &[18, 0, 0],
        );
        check(
            pod_with_images(&[], &["big:v1"]),
            vec![big("n1"), big("n2"), node_with_images("n3", &[])],
            &[38, 38, 0],
        );
    }

    #[test]
    fn spread_counts_every_node_not_only_the_feasible_ones() {
        let snapshot = snapshot(three_nodes());
        let pod = pod_with_images(&[], &["registry/app"]);
        let mut state = CycleState::default();
        let only_first = [&*snapshot.nodes[0]];
        assert!(ImageLocality.pre_score(&mut state, &pod, &snapshot, &only_first).is_success());
        assert_eq!(ImageLocality.score(&state, &pod, only_first[0]), 14);
    }
}
