//! The pipeline graph's layout, computed on the server by `layout-rs` (a Sugiyama-style
//! layered layout with edge routing), so the browser only draws boxes and paths.

use layout::core::base::Orientation;
use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::Point;
use layout::core::style::StyleAttr;
use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
use layout::topo::layout::VisualGraph;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A node to place: a job or a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIn {
    /// Unique id (a job name or a resource id `type.name`).
    pub id: String,
    /// The text shown in it.
    pub label: String,
    /// `job` or `resource`.
    pub kind: String,
}

/// An edge to route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeIn {
    /// The id of the node it leaves.
    pub from: String,
    /// The id of the node it enters.
    pub to: String,
    /// `get`, `trigger`, `passed` or `put`.
    pub kind: String,
}

/// A placed node; `x`, `y` are its top-left corner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeOut {
    /// The node's id.
    pub id: String,
    /// The text shown in it.
    pub label: String,
    /// `job` or `resource`.
    pub kind: String,
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

/// A routed edge: an SVG path (`M … C … S …`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeOut {
    /// The id of the node it leaves.
    pub from: String,
    /// The id of the node it enters.
    pub to: String,
    /// `get`, `trigger`, `passed` or `put`.
    pub kind: String,
    /// The path's `d` attribute.
    pub path: String,
}

/// The laid-out graph, in SVG user units from (0, 0).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// Total width.
    pub width: f64,
    /// Total height.
    pub height: f64,
    /// Every node, placed.
    pub nodes: Vec<NodeOut>,
    /// Every edge whose ends are both nodes, routed.
    pub edges: Vec<EdgeOut>,
}

/// Average width of a character of the UI's 13 px font, for sizing boxes to their labels.
const CHAR_W: f64 = 7.6;
const NODE_H: f64 = 34.0;
const MARGIN: f64 = 16.0;

/// Lays out `nodes` and `edges` left to right; edges naming unknown nodes are dropped.
pub fn layout(nodes: &[NodeIn], edges: &[EdgeIn]) -> Layout {
    if nodes.is_empty() {
        return Layout::default();
    }
    let mut vg = VisualGraph::new(Orientation::LeftToRight);
    let mut handles = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let chars = f64::from(u32::try_from(n.label.chars().count()).unwrap_or(u32::MAX));
        let size = Point::new((chars * CHAR_W + 28.0).clamp(80.0, 360.0), NODE_H);
        let elem = Element::create_with_properties(
            ShapeKind::new_box(""),
            StyleAttr::simple(),
            Orientation::LeftToRight,
            size,
            format!("n{i}"),
        );
        handles.insert(n.id.as_str(), vg.add_node(elem));
    }
    let mut kept = Vec::new();
    for e in edges {
        let (Some(a), Some(b)) = (handles.get(e.from.as_str()), handles.get(e.to.as_str())) else {
            continue;
        };
        if a == b {
            continue;
        }
        vg.add_edge(
            Arrow::simple_with_properties("", format!("e{}", kept.len())),
            *a,
            *b,
        );
        kept.push(e);
    }
    let mut rec = Recorder::default();
    vg.do_it(false, false, false, &mut rec);
    assemble(nodes, &kept, rec)
}

fn assemble(nodes: &[NodeIn], kept: &[&EdgeIn], rec: Recorder) -> Layout {
    let (mut min_x, mut min_y) = (f64::MAX, f64::MAX);
    let (mut max_x, mut max_y) = (f64::MIN, f64::MIN);
    for (x, y, w, h) in rec.rects.values() {
        min_x = min_x.min(*x);
        min_y = min_y.min(*y);
        max_x = max_x.max(x + w);
        max_y = max_y.max(y + h);
    }
    for (_, pts) in &rec.paths {
        for p in pts {
            min_x = min_x.min(p.x);
            min_y = min_y.min(p.y);
            max_x = max_x.max(p.x);
            max_y = max_y.max(p.y);
        }
    }
    let (dx, dy) = (MARGIN - min_x, MARGIN - min_y);
    let out_nodes = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let (x, y, w, h) = rec.rects.get(&format!("n{i}"))?;
            Some(NodeOut {
                id: n.id.clone(),
                label: n.label.clone(),
                kind: n.kind.clone(),
                x: x + dx,
                y: y + dy,
                w: *w,
                h: *h,
            })
        })
        .collect();
    let mut out_edges = Vec::new();
    for (prop, pts) in &rec.paths {
        let Some(e) = prop
            .strip_prefix('e')
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| kept.get(i))
        else {
            continue;
        };
        out_edges.push(EdgeOut {
            from: e.from.clone(),
            to: e.to.clone(),
            kind: e.kind.clone(),
            path: svg_path(pts, dx, dy),
        });
    }
    Layout {
        width: (max_x - min_x).max(0.0) + 2.0 * MARGIN,
        height: (max_y - min_y).max(0.0) + 2.0 * MARGIN,
        nodes: out_nodes,
        edges: out_edges,
    }
}

/// The path as layout-rs's own SVG backend writes it: `M p0 C c0, c1, p1 S c, p …`.
fn svg_path(pts: &[Point], dx: f64, dy: f64) -> String {
    use std::fmt::Write;
    let mut d = String::new();
    let p = |i: usize| {
        pts.get(i)
            .map(|p| (p.x + dx, p.y + dy))
            .unwrap_or((0.0, 0.0))
    };
    if pts.len() < 4 {
        return d;
    }
    let (a, b, c, e) = (p(0), p(1), p(2), p(3));
    let _ = write!(
        d,
        "M{:.1} {:.1} C{:.1} {:.1},{:.1} {:.1},{:.1} {:.1}",
        a.0, a.1, b.0, b.1, c.0, c.1, e.0, e.1
    );
    let mut i = 4;
    while i + 1 < pts.len() {
        let (s, t) = (p(i), p(i + 1));
        let _ = write!(d, " S{:.1} {:.1},{:.1} {:.1}", s.0, s.1, t.0, t.1);
        i += 2;
    }
    d
}

/// A render backend that keeps where things went instead of drawing them.
#[derive(Default)]
struct Recorder {
    rects: HashMap<String, (f64, f64, f64, f64)>,
    paths: Vec<(String, Vec<Point>)>,
}

impl RenderBackend for Recorder {
    fn draw_rect(
        &mut self,
        xy: Point,
        size: Point,
        _look: &StyleAttr,
        properties: Option<String>,
        _clip: Option<ClipHandle>,
    ) {
        if let Some(p) = properties {
            self.rects.insert(p, (xy.x, xy.y, size.x, size.y));
        }
    }

    fn draw_line(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    fn draw_circle(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    fn draw_text(&mut self, _: Point, _: &str, _: &StyleAttr) {}

    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        _dashed: bool,
        _head: (bool, bool),
        _look: &StyleAttr,
        properties: Option<String>,
        _text: &str,
    ) {
        let Some(p) = properties else { return };
        let pts = path.iter().flat_map(|(a, b)| [*a, *b]).collect();
        self.paths.push((p, pts));
    }

    fn create_clip(&mut self, _: Point, _: Point, _: usize) -> ClipHandle {
        0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn node(id: &str, kind: &str) -> NodeIn {
        NodeIn {
            id: id.into(),
            label: id.into(),
            kind: kind.into(),
        }
    }

    fn edge(a: &str, b: &str) -> EdgeIn {
        EdgeIn {
            from: a.into(),
            to: b.into(),
            kind: "passed".into(),
        }
    }

    #[test]
    fn every_node_is_placed_without_overlap_and_flows_left_to_right() {
        let nodes = [
            node("git.src", "resource"),
            node("test", "job"),
            node("build", "job"),
            node("deploy", "job"),
            node("lint", "job"),
        ];
        let edges = [
            edge("git.src", "test"),
            edge("git.src", "lint"),
            edge("test", "build"),
            edge("lint", "build"),
            edge("build", "deploy"),
            edge("git.src", "deploy"),
            edge("nope", "deploy"),
        ];
        let l = layout(&nodes, &edges);
        assert_eq!(l.nodes.len(), 5);
        assert_eq!(l.edges.len(), 6, "the edge to an unknown node is dropped");
        let at = |id: &str| l.nodes.iter().find(|n| n.id == id).unwrap();
        assert!(at("git.src").x < at("test").x);
        assert!(at("test").x < at("build").x);
        assert!(at("build").x < at("deploy").x);
        for a in &l.nodes {
            assert!(a.x >= 0.0 && a.y >= 0.0 && a.x + a.w <= l.width && a.y + a.h <= l.height);
            for b in &l.nodes {
                let apart =
                    a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
                assert!(a.id == b.id || apart, "{} overlaps {}", a.id, b.id);
            }
        }
        for e in &l.edges {
            assert!(
                e.path.starts_with('M') && e.path.contains('C'),
                "{}",
                e.path
            );
        }
    }

    #[test]
    fn an_empty_pipeline_has_an_empty_layout_and_cycles_do_not_hang() {
        assert_eq!(layout(&[], &[]), Layout::default());
        let l = layout(
            &[node("a", "job"), node("b", "job")],
            &[edge("a", "b"), edge("b", "a"), edge("a", "a")],
        );
        assert_eq!(l.nodes.len(), 2);
    }
}
