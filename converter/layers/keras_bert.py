"""keras-bert (``keras_bert``, tf_keras only): its own layers, those ``get_model`` builds
and the masked pooling and convolution it offers for heads (its position embedding,
normalization, attention and feed-forward layers come from the packages in
``keras_transformer.py`` and ``keras_multi_head.py``)."""
from __future__ import annotations

from .convolution import conv_settings, conv_weights, convolution
from .keras_transformer import EMBEDDING_RET, SIMILARITY, embedding_ret, embedding_sim
from .registry import (NEW_MASK, WeightSpec, compute_dtype, first_input, first_mask,
                       layer_kind, no_mask)

# TokenEmbedding: keras-embed-sim's EmbeddingRet under keras-bert's name;
# EmbeddingSimilarity: EmbeddingSim, always with its bias.
layer_kind("TokenEmbedding", **EMBEDDING_RET)(embedding_ret)
layer_kind("EmbeddingSimilarity", **SIMILARITY)(embedding_sim)


@layer_kind("Masked", output_mask=lambda node: NEW_MASK)
def masked(node):
    """``[x, positions]`` -> x, with the mask ``positions != 0 and mask(x)`` (and that mask
    as floats with ``return_masked``)."""
    x = node.input("inputs")[0]
    types = [(x.shape, x.dtype)]
    if node.config.get("return_masked"):
        types.append((x.shape[:-1], compute_dtype(node)))
    return types


@layer_kind("Extract", output_mask=no_mask)
def extract(node):
    """x[:, index]."""
    shape = first_input(node).shape
    return [(shape[:1] + shape[2:], compute_dtype(node))]


@layer_kind("TaskEmbedding", weights=lambda node: [WeightSpec(
    "embeddings", "vars/0", (node.config["input_dim"], node.config["output_dim"]))])
def task_embedding(node):
    """``[x, task]`` -> x + embeddings[task] (task (B, 1); zeroed for task 0 with
    ``mask_zero``); x's mask passes on."""
    return [(node.input("inputs")[0].shape, compute_dtype(node))]


@layer_kind("MaskedGlobalMaxPool1D", mask_roles={"inputs": "mask"}, output_mask=no_mask)
def masked_global_max_pool_1d(node):
    """max over the steps of x - 1e6 where masked: (B, F)."""
    shape = first_input(node).shape
    return [(shape[:1] + shape[2:], compute_dtype(node))]


def _masked_conv_mask(node):
    """The input's mask, cut by (kernel_size // 2) * dilation_rate * 2 leading steps with
    ``valid`` padding (the package's rule)."""
    mask = first_mask(node)
    if mask is not None and node.config.get("padding", "valid") == "valid":
        return NEW_MASK
    return mask


# Conv1D on x * mask[..., None].
layer_kind("MaskedConv1D", mask_roles={"inputs": "mask"}, weights=conv_weights,
           output_mask=_masked_conv_mask)(convolution)


def masked_conv_cut(node) -> int:
    """Leading steps MaskedConv1D drops from the mask with ``valid`` padding."""
    kernel, _, dilation = conv_settings(node)
    return kernel[0] // 2 * dilation[0] * 2
