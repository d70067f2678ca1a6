"""A scene graph (`stages.infer.SceneGraph`) as Graphviz DOT for the app: objects as boxes, relations as labelled
arrows, the objects a detector saw in the generated image marked."""

from __future__ import annotations

from typing import Sequence


def _dot_label(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


SEEN_IN_IMAGE = "(seen in image)"
SEEN_FILL = "#d5f5e3"


def scene_graph_dot(graph, font_size: int = 18, seen: Sequence[str] = ()) -> str:
    """Graphviz DOT: objects as boxes (attributes on a second line), relations as labelled arrows. `seen`: COCO
    classes a detector found in the generated low-fidelity image: an object naming one is marked "(seen in image)"
    (green), and a class no object names becomes a node of its own, dashed."""
    lines = ["digraph scene {", "  rankdir=LR; bgcolor=transparent;",
             f'  node [shape=box, style="rounded,filled", fillcolor="#eaf2fb", color="#2e86c1", fontname="Helvetica", '
             f'fontsize={font_size}];',
             f'  edge [color="#555555", fontcolor="#c0392b", fontname="Helvetica", fontsize={font_size - 2}];']
    if not graph.objects:
        lines.append(f'  empty [label={_dot_label("no objects in the recovered tags")}, shape=plaintext];')
    matched: set[str] = set()
    if seen:
        from slime_core.stages.objects import coco_classes  # the detector's torchvision: not before the first paint
    for i, obj in enumerate(graph.objects):
        attrs = graph.attributes.get(obj, [])[:3]
        label = obj + (f"\n({', '.join(attrs)})" if attrs else "")
        cls = next(iter(coco_classes([obj])), None) if seen else None
        if cls in seen:
            matched.add(cls)
            lines.append(f"  n{i} [label={_dot_label(label + chr(10) + SEEN_IN_IMAGE)}, fillcolor=\"{SEEN_FILL}\"];")
        else:
            lines.append(f"  n{i} [label={_dot_label(label)}];")
    for j, cls in enumerate(c for c in dict.fromkeys(seen) if c not in matched):
        lines.append(f"  seen{j} [label={_dot_label(cls + chr(10) + SEEN_IN_IMAGE)}, fillcolor=\"{SEEN_FILL}\", "
                     f'style="rounded,filled,dashed"];')
    index = {o: i for i, o in enumerate(graph.objects)}
    drawn = set()
    for s, p, o in list(graph.relations) + list(graph.raw_relations):
        if s in index and o in index and (s, o) not in drawn:
            drawn.add((s, o))
            lines.append(f"  n{index[s]} -> n{index[o]} [label={_dot_label(p.replace('_', ' '))}];")
    lines.append("}")
    return "\n".join(lines)
