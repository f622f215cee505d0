"""Emitters for tensor operations (Keras 3 ops nodes, Keras 2 TFOpLambda) that build masks:
comparisons and logical operations."""
from __future__ import annotations

import numpy as np

from ..ir import Node, Tensor
from ..layers.operations import operands, operation
from .builder import Builder
from .registry import emits

# operation -> (ONNX op, negate the result)
MASK_OPERATIONS = {"NotEqual": ("Equal", True), "Equal": ("Equal", False),
                   "LogicalAnd": ("And", False), "LogicalOr": ("Or", False)}


@emits(*MASK_OPERATIONS)
def mask_operation(node: Node, b: Builder) -> list:
    """Element-wise comparison / logic with NumPy broadcasting: x != y, x == y, x & y, x | y."""
    op_type, negate = MASK_OPERATIONS[operation(node)[0]]
    reference = next(v for v in operands(node) if isinstance(v, Tensor))
    inputs = [b.value(v) if isinstance(v, Tensor)
              else b.constant(f"{node.name}/constant", np.asarray(v, dtype=reference.dtype))
              for v in operands(node)]
    result = b.op(op_type, inputs, f"{node.name}/{op_type.lower()}" if negate else node.name)
    return [b.op("Not", [result], node.name) if negate else result]
