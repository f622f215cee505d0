"""``inspect``: what the parser understood, for people (text) and machines (JSON).

For every layer call: its class, its inputs BY ROLE, its non-tensor arguments, its outputs
with shapes and dtypes, its parameter count and the masks that flow in and out. A composite
layer's call (KerasHub's TransformerEncoder, keras-multi-head's MultiHead) is listed with
the inner calls it expands into indented under it.
"""
from __future__ import annotations

from .ir import MASK_ROLES, Graph, Node, Tensor, format_shape
from .errors import reported
from .model import load


def inspect(path, weights=None) -> dict:
    """A JSON-ready description of the model at ``path`` (see ``describe``)."""
    with load(path, weights) as graph, reported(graph.source.source):
        return describe(graph)


def describe(graph: Graph) -> dict:
    return {
        "model": graph.name,
        "dialect": graph.dialect,
        "keras_version": graph.keras_version,
        "source": graph.source.source if graph.source is not None else None,
        "inputs": [_tensor(t) for t in graph.inputs],
        "outputs": [dict(_tensor(t), name=name, tensor=t.name)
                    for name, t in zip(graph.output_names, graph.outputs)],
        "nodes": [_node(n, depth, any(n is c for c in graph.composites))
                  for n, depth in graph.calls()],
        "unsupported": unsupported_layers(graph),
        "notes": list(graph.notes),
    }


def unsupported_layers(graph: Graph) -> list:
    """``[{"layer", "class_name", "module"}]`` of every layer kerasonnx knows nothing of."""
    return [{"layer": layer.name, "class_name": layer.class_name,
             "module": layer.module if isinstance(layer.module, str) else None}
            for layer in graph.layers.values() if layer.kind is None]


def _tensor(tensor: Tensor) -> dict:
    return {"name": tensor.name, "shape": None if tensor.shape is None else list(tensor.shape),
            "dtype": tensor.dtype}


def _names(value):
    if isinstance(value, Tensor):
        return value.name
    if isinstance(value, list):
        return [_names(v) for v in value]
    return value


def _node(node: Node, depth: int, composite: bool) -> dict:
    inputs = {r: _names(v) for r, v in node.inputs.items() if r not in MASK_ROLES}
    masks = {r: _names(v) for r, v in node.inputs.items() if r in MASK_ROLES}
    return {
        "name": node.name,
        "layer": node.layer.name,
        "class_name": node.class_name,
        "call_index": node.call_index,
        "inputs": inputs,
        "masks": masks,
        "arguments": node.arguments,
        "outputs": [dict(_tensor(t), mask=t.mask.name if t.mask is not None else None)
                    for t in node.outputs],
        "computed_masks": [_tensor(t) for t in node.mask_outputs],
        "params": node.layer.param_count(),
        "supported": node.layer.kind is not None,
        "composite": composite,  # expanded: the calls that follow, one level deeper
        "inside": None if node.parent is None else node.parent.name,
        "depth": depth,
    }


def render_text(report: dict) -> str:
    """The report as aligned text for a terminal."""
    version = f", Keras {report['keras_version']}" if report["keras_version"] else ""
    lines = [f"model {report['model']!r} ({report['dialect']} dialect{version}) "
             f"from {report['source']}", "", "inputs:"]
    lines += [f"  {t['name']}  {_shape_text(t)}  {t['dtype']}" for t in report["inputs"]]
    lines += ["", "layer calls:"]
    for node in report["nodes"]:
        params = "?" if node["params"] is None else f"{node['params']:,}"
        flag = "" if node["supported"] else "   [not supported]"
        flag += "   [composite: its inner calls follow]" if node.get("composite") else ""
        indent = "    " * node.get("depth", 0)
        lines.append(f"{indent}  {node['name']}  {node['class_name']}  params {params}{flag}")
        lines.append(f"{indent}      in:   {_roles_text(node['inputs']) or '-'}")
        if node["arguments"]:
            args = " ".join(f"{k}={v!r}" for k, v in node["arguments"].items())
            lines.append(f"{indent}      args: {args}")
        for out in node["outputs"]:
            mask = f"  mask={out['mask']}" if out["mask"] else ""
            lines.append(f"{indent}      out:  {out['name']}  {_shape_text(out)}  "
                         f"{out['dtype']}{mask}")
        if node["masks"]:
            lines.append(f"{indent}      masks in: {_roles_text(node['masks'])}")
    lines += ["", "outputs:"]
    lines += [f"  {o['name']}  = {o['tensor']}  {_shape_text(o)}  {o['dtype']}"
              for o in report["outputs"]]
    if report["unsupported"]:
        listed = ", ".join(f"{u['layer']} ({u['class_name']}"
                           + (f" from {u['module']})" if u.get("module") else ")")
                           for u in report["unsupported"])
        lines += ["", f"not supported yet: {listed}"]
    lines += [f"note: {note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def _shape_text(tensor: dict) -> str:
    return format_shape(None if tensor["shape"] is None else tuple(tensor["shape"]))


def _roles_text(roles: dict) -> str:
    def one(value):
        if isinstance(value, list):
            return "[" + ", ".join("None" if v is None else str(v) for v in value) + "]"
        return str(value)

    return " ".join(f"{role}={one(value)}" for role, value in roles.items())
